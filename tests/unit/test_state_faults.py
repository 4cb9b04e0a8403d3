"""What the lab's state says of its recorded faults: the nodes they hold down, and what `up` leaves of them."""

from testbed import state


def _fault(kind: str, node: str, down: bool) -> dict:
    return {"id": kind[:3] + node, "kind": kind, "args": {"node": node}, "since": 0.0, "until": None,
            "notes": {"down": True} if down else {}}


def test_stopped_and_frozen_nodes_are_held_down_and_up_ends_only_those_faults():
    st = state.LabState("lab", "t.yaml", {}, faults=[_fault("node-stop", "node2", True),
                                                     _fault("node-pause", "node3", True),
                                                     _fault("delay", "node1", False)])
    assert st.held_down() == {"node2", "node3"}
    assert [f["kind"] for f in st.faults_up()] == ["delay"]
    assert state.holds_down(st.faults[2]) is None


def test_a_record_from_before_notes_existed_holds_nothing():
    record = {"id": "x", "kind": "delay", "args": {"node": "node1", "ms": 5}}
    assert state.holds_down(record) is None
    assert state.LabState("lab", "t.yaml", {}, faults=[record]).held_down() == set()
