"""`make bench`: every benchmark, figures printed as a table (and as JSON with --json). No asserts: targets
are printed beside the figures for a person to read."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench_cluster
import bench_cni
import bench_dns
import bench_edge
import bench_faults
import bench_hosts
import bench_images
import bench_observe
import bench_pods
import bench_policy
import bench_proxy
import bench_routing
import bench_scale
import bench_throughput
import bench_up

TARGETS = {
    "up_s_best": "≤ 5 s",
    "up_s_median": "≤ 2 s; within 10 % of before the fabric machine",
    "agent_relayed_stream_ms": "(against agent_socket_ms: how a machine on another host is reached)",
    "three_nodes_pods_per_s": "≥ 1,000 /s (median of the bursts; ≥ 500 /s before the scale issue)",
    "three_nodes_pods_per_s_slowest": "(the slowest burst)",
    "three_nodes_pods_per_s_fastest": "(the fastest burst)",
    "mem_machine_kib_per_pod": "≤ 1024 KiB",
    "vxlan_vs_plain_ratio": "≥ 0.90",
    "vxlan_vs_raw_veth_ratio": "≥ 0.75",
    "host-gw_vs_raw_veth_ratio": "≥ 0.80",
    "bgp_vs_raw_veth_ratio": "≥ 0.80",
    "bgp_up_s": "≤ 3 s",
    "bgp_withdraw_after_node_stop_s": "≤ hold time + 1 s (4 s)",
    "bgp_routes_back_after_node_start_and_up_s": "≤ hold time + 1 s (4 s)",
    "bgp_routes_back_after_router_daemon_kill_s": "≤ hold time + 1 s (4 s)",
    "move_s": "≤ 1 s",
    "nft_full_sync_1000x10_s": "≤ 1 s",
    "iptables_full_sync_1000x10_s": "≤ 1 s",
    "nft_full_sync_5000x10_s": "≤ 2 s",
    "iptables_full_sync_5000x10_s": "≤ 2 s",
    "nft_one_endpoint_change_at_10k_s": "≤ 0.05 s",
    "iptables_one_endpoint_change_at_10k_s": "≤ 0.5 s",
    "cluster_ip_vs_pod_ip_ratio": "≥ 0.95",
    "connections_10k_failures": "0",
    "apply_to_effect_all_nodes_s": "≤ 1 s",
    "dns_cluster_qps": "≥ 30,000",
    "dns_cluster_p99_ms": "< 5 ms",
    "dns_cluster_p99_at_10k_qps_ms": "< 5 ms",
    "dns_update_to_visible_s": "≤ 1 s",
    "dns_node_cache_qps": "≥ 60,000",
    "dns_node_cache_p99_at_10k_qps_ms": "< 5 ms",
    "dns_without_cache_same_lab_qps": "≥ 30,000",
    "readiness_unready_observed_to_synced_s": "≤ 1 s",
    "readiness_ready_observed_to_synced_s": "≤ 1 s",
    "policy_apply_to_enforced_s": "≤ 1 s",
    "policy_matrix_9x9x2x2_s": "≤ 10 s",
    "policy_matrix_disagreements": "0",
    "policy_full_sync_200x500_s": "≤ 1 s per node",
    "policy_200_vs_none_ratio": "≥ 0.90",
    "diagnose_default_lab_s": "≤ 5 s",
    "diagnose_20_nodes_s": "≤ 10 s",
    "trace_one_flow_s": "≤ 2 s",
    "graph_20_nodes_svg_s": "≤ 2 s",
    "ui_first_render_s": "≤ 1 s",
    "ui_update_after_apply_s": "≤ 2 s",
    "twenty_nodes_up_s": "(for reference)",
    "gateway_vs_direct_ratio": "≥ 0.6 (median of three pairs)",
    "gateway_vs_direct_ratio_lowest": "(the lowest pair)",
    "gateway_vs_direct_ratio_highest": "(the highest pair)",
    "gateway_p99_at_half_rate_ms": "< 5 ms",
    "route_apply_to_served_s": "≤ 1 s",
    "endpoint_change_to_served_s": "≤ 1 s",
    "endpoint_change_reloads": "0",
    "failed_requests_during_10_reloads": "0",
    "cni_reference_pods_per_s": "≥ 150 /s",
    "cni_builtin_pods_per_s": "no slower than before (≥ 500 /s)",
    "cni_test_builtin_s": "≤ 10 s",
    "cni_test_reference_s": "≤ 10 s",
    "outage_endpoint_pod_killed_s": "≤ 1 s",
    "outage_endpoint_node_stopped_s": "≤ grace + 1 s (5 s)",
    "outage_endpoint_node_paused_s": "≤ grace + 1 s (5 s)",
    "outage_router_restart_bgp_s": "≤ hold + 1 s (4 s)",
    "dns_failed_lookups_one_server_stopped_s": "≤ 2 s",
    "node_restart_until_pods_answer_s": "≤ 3 s",
    "scale_up_s_200_nodes": "≤ 30 s",
    "scale_down_s_200_nodes": "≤ 20 s",
    "scale_resync_s_at_10000_pods": "≤ 0.5 s",
    "scale_pods_apply_s_10000_pods_on_200": "≤ 20 s",
    **{f"scale_mem_mib_per_node_{n}_nodes": "≤ 12 MiB" for n in (10, 50, 100, 200, 250)},
    **{f"scale_mem_mib_per_node_{n}_nodes_merged": "≤ 12 MiB" for n in (10, 50, 100, 200, 250)},
    **{f"scale_resync_s_{n}_nodes": "≤ 0.5 s" for n in (10, 50, 100, 200, 250)},
    **{f"scale_one_service_apply_s_{n}_nodes": "≤ 1 s" for n in (10, 50, 100, 200, 250)},
    "cluster_apply_services_s": "every node programmed: ≤ 1 s a node's sync (nft 1,000 x 10), plus the CLI",
    "cluster_apply_policies_s": "every node programmed: ≤ 1 s a node's sync (200 policies), plus the CLI",
    "cluster_resync_s": "≤ 0.5 s",
    "cluster_dns_answered": "1000 (every Service)",
    "delayer_packets_per_s": "(measured: said in `fault delay --help`)",
    "image_load_s": "≤ 5 s",
    "image_copy_to_second_engine_s": "(for multi-host: `docker save | docker load` took about 5 s)",
    "image_build_from_nothing_s": "~30 s (for comparison)",
    "hosts_across_vs_within_ratio": "(the stitch's cost: pod→pod across two hosts against within one)",
    "hosts_up_split_s": "(against hosts_up_one_engine_s: the same 4-node lab on one engine)",
    "hosts_jumbo_across_vs_within_ratio": "(the same with a jumbo LAN and networking.mtu: 9000)",
}


def main() -> None:
    results: dict[str, float] = {}
    for name, module in (("up", bench_up), ("pods", bench_pods), ("throughput", bench_throughput),
                         ("routing", bench_routing), ("proxy", bench_proxy), ("dns", bench_dns),
                         ("policy", bench_policy), ("observe", bench_observe), ("edge", bench_edge), ("cni", bench_cni),
                         ("faults", bench_faults), ("scale", bench_scale), ("cluster", bench_cluster),
                         ("images", bench_images), ("hosts", bench_hosts)):
        if len(sys.argv) > 1 and sys.argv[1] not in ("--json", name):
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results |= module.run()
    if "--json" in sys.argv:
        print(json.dumps(results, indent=2))
        return
    width = max(len(k) for k in results)
    for key, value in results.items():
        target = TARGETS.get(key, "")
        print(f"{key:<{width}}  {value:10.3f}  {target}")


if __name__ == "__main__":
    main()
