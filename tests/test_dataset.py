"""reenactbook.dataset: the on-disk format's writer lock, the commit hook and resumed roots with mixed shards (no real data needed)."""
import logging
import subprocess
import sys

import numpy as np
import pytest

from reenactbook.core import DataError
from reenactbook.dataset import DatasetWriter, FaceDataset, writer_lock


def _frame(writer, video, frame, extras=None):
    with writer.shard(f"id0/{video}") as shard:
        shard.add(np.zeros((32, 32, 3), np.uint8), {"identity": "id0", "video": video, "clip": "c", "frame": frame},
                  {"68": np.full((68, 2), 16.0)}, extras)


def test_a_second_writer_of_a_root_gets_one_clear_line(tmp_path):
    "A root locked by another process: DataError naming that process; free again once it ends."
    root = tmp_path / "root"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom reenactbook.dataset import writer_lock\n"
                               f"with writer_lock({str(root)!r}, 'synth'):\n    print('locked', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(DataError, match=rf"is being written by `reenactbook synth` \(pid {holder.pid} on .*choose another folder"):
            with writer_lock(root):
                pass
    finally:
        holder.kill(); holder.wait()
    with writer_lock(root):  # the kernel released the lock of the killed holder
        assert (root / ".lock").read_text().startswith("`reenactbook prep`")
    with pytest.raises(DataError, match="cannot write the dataset here"):
        with writer_lock("/proc/reenactbook-read-only/root"):
            pass


def test_before_commit_can_stop_a_shard_from_being_committed(tmp_path):
    writer = DatasetWriter(tmp_path / "root", image_size=32, source="test")
    _frame(writer, "v1", 0)
    def orphaned():
        raise SystemExit("the run is gone")
    writer.before_commit = orphaned
    with pytest.raises(SystemExit):
        _frame(writer, "v2", 0)
    assert writer.done("id0/v1") and not writer.done("id0/v2")


class Records(logging.Handler):
    "The messages logged by the package while it is attached."
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []
    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture()
def logged():
    from reenactbook.core import get_logger
    handler = Records()
    get_logger().addHandler(handler)
    yield handler.messages
    get_logger().removeHandler(handler)


def test_an_extra_only_some_shards_have_is_left_out_with_a_warning(tmp_path, logged):
    "Resuming a root whose old shards lack an extra that new shards have: the merge works, without that extra."
    writer = DatasetWriter(tmp_path / "root", image_size=32, source="test")
    _frame(writer, "old", 0)
    _frame(writer, "new", 0, {"alignment_matrix": np.eye(2, 3, dtype=np.float32)})
    dataset = writer.finalize()
    assert len(dataset) == 2 and dataset.meta["extras"] == []
    assert any("extra 'alignment_matrix' is missing in 1 of 2 shards" in m for m in logged)
    with pytest.raises(DataError, match="no extra 'alignment_matrix'"):
        FaceDataset(tmp_path / "root").extra("alignment_matrix")
