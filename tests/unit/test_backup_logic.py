import io
import random
import tarfile

import pytest

from wpfarm_assets.backups.backup import TarCounter, tar_argv
from wpfarm_assets.backups.verify import excluded
from wpfarm_assets.core.batches import site_runs


def make_tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("wp-content/uploads")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    return out.getvalue()


@pytest.mark.parametrize("seed", range(5))
def test_tar_counter_counts_regular_files_whatever_the_chunking(seed):
    rng = random.Random(seed)
    files = {f"wp-content/{'d/' * rng.randint(0, 40)}f{i}-{'x' * rng.randint(0, 120)}": rng.randbytes(rng.randint(0, 3000))
             for i in range(rng.randint(1, 40))}
    data = make_tar(files)
    counter = TarCounter()
    pos = 0
    while pos < len(data):
        step = rng.randint(1, 2000)
        counter.feed(data[pos : pos + step])
        pos += step
    assert counter.files == len(files)
    assert counter.complete


def test_tar_counter_notices_a_stream_cut_short():
    data = make_tar({"wp-content/a": b"x" * 5000, "wp-content/b": b"y" * 700})
    for cut in (100, 512, 1024, 3000, 6656):
        counter = TarCounter()
        counter.feed(data[:cut])
        assert not counter.complete, cut


def test_tar_command_is_an_argument_list_with_anchored_excludes():
    argv = tar_argv("/srv/sites/a.example/wp-content", with_wp_config=True)
    assert argv[:3] == ["tar", "--create", "--file=-"]
    assert {"--directory=/srv/sites/a.example", "--anchored", "--sparse", "--format=posix"} <= set(argv)
    assert argv[-3:] == ["--", "wp-content", "wp-config.php"]
    assert "--exclude=wp-content/cache" in argv and "--exclude=*.log" in argv
    assert tar_argv("/srv/x/wp-content", with_wp_config=False)[-2:] == ["--", "wp-content"]


@pytest.mark.parametrize("path,out", [
    ("wp-content/cache/x.html", True), ("wp-content/upgrade", True), ("wp-content/debug.log", True),
    ("wp-content/uploads/2026/01/a.log", True), ("wp-content/updraft/db.gz", True),
    ("wp-content/plugins/cache-plugin/cache/x.php", False), ("wp-content/uploads/a.jpg", False),
    ("wp-config.php", False),
])
def test_excludes_match_the_archive_rules(path, out):
    assert excluded(path) is out


def test_selected_sites_become_the_fewest_runs_of_consecutive_partitions():
    order = ["a", "b", "c", "d", "e", "f"]
    assert site_runs(order, order, 100) == [list("abcdef")]
    assert site_runs(["b", "c", "e"], order, 100) == [["b", "c"], ["e"]]
    assert site_runs(["f", "a"], order, 100) == [["a"], ["f"]]
    assert site_runs([], order, 100) == []
    assert site_runs(order, order, 4) == [list("abcd"), list("ef")]
    assert site_runs(["a", "b", "c", "e", "f"], order, 2) == [["a", "b"], ["c"], ["e", "f"]]
