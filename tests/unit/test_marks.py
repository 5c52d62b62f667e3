"""The ingest marks' per-take record (streams.marks): what a take wrote on a partition,
as one JSON object that restores to exactly the same writes."""

import orjson

from streams.marks import MarkStore, _expand
from tributary.state import DictBackend, PartitionState


def test_a_takes_record_restores_to_the_same_writes(tmp_path):
    store = MarkStore("unused:9092", "tributary-streams", tmp_path)
    state = store.states[3] = PartitionState(3, DictBackend())
    assert store.pending(3) is None  # nothing written: nothing to send
    state["ev:old"] = {"part": 3, "o": 1, "t": 1.5, "id": "inference-events/3@1#0"}
    store.committed(3)
    state["ev:a"] = {"part": 3, "o": 7, "t": 2.0, "id": "inference-events/3@7#2", "d": "ab\u00e9\"\\"}
    state["xb"] = [0, 1]
    state.pop("ev:old")
    record = store.pending(3)
    assert record is not None
    assert orjson.loads(record) == {"ev:a": state["ev:a"], "xb": [0, 1], "ev:old": None}
    assert _expand(b"3:7", record) == [(k.encode(), v) for k, v in state.changes()]
    store.committed(3)
    assert store.pending(3) is None and state.get("ev:old") is None and state["xb"] == [0, 1]
    assert store.pending(5) is None  # a partition this worker does not own
