"""The lab's control plane: the per-lab controller process (controller.py), which drives the lab's syncs from
what it observes (pods' readiness as the nodes' agents report it). It sits above the lab's lifecycle; starting
and finding its process is the runtime's (runtime/readiness.py)."""
