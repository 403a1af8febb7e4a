"""A batch's input file read as the feeder reads it: formats by content, every input once in
order, the same inputs after a resume from any saved cursor, and the limits."""
import gzip
import io
import json
import tarfile
import zipfile

import pytest

from jobs.batchfile import (JSONL, TAR, TAR_GZ, ZIP, FileProblem, Limits, items, prepare, scan,
                            sniff)

LIMITS = Limits(max_inputs=1000, max_input_bytes=10_000, max_total_bytes=1_000_000)


def make_tar(members, path, compress=False):
    with tarfile.open(path, "w:gz" if compress else "w") as tar:
        for name, data in members:
            if data is None:
                info = tarfile.TarInfo(name)
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
                continue
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


def make_zip(members, path):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members:
            if data is None:
                z.writestr(name.rstrip("/") + "/", b"")
            else:
                z.writestr(name, data)
    return str(path)


def head(path) -> bytes:
    with open(path, "rb") as f:
        return f.read(512)


MEMBERS = [("photos/", None), ("photos/a.png", b"A" * 10), ("photos/b.png", b"B" * 700),
           ("../../etc/passwd", b"C"), ("/abs/d.jpg", b"D" * 3)]
IDS = ["photos/a.png", "photos/b.png", "../../etc/passwd", "/abs/d.jpg"]


@pytest.fixture(params=[TAR, TAR_GZ, ZIP])
def archive(request, tmp_path):
    fmt = request.param
    if fmt == ZIP:
        path = make_zip(MEMBERS, tmp_path / "in")
    else:
        path = make_tar(MEMBERS, tmp_path / "in", compress=fmt == TAR_GZ)
    assert sniff(head(path)) == fmt
    return prepare(path, fmt, str(tmp_path / "plain.tar"), LIMITS)


def test_archives_give_each_file_once_in_order_with_its_path_as_id(archive):
    path, fmt = archive
    got = [(item.index, item.custom_id, item.data) for item, _ in items(path, fmt, LIMITS)]
    assert got == [(0, "photos/a.png", b"A" * 10), (1, "photos/b.png", b"B" * 700),
                   (2, "../../etc/passwd", b"C"), (3, "/abs/d.jpg", b"D" * 3)]
    assert scan(path, fmt, LIMITS) == 4


def test_a_read_resumed_from_any_cursor_gives_the_rest_exactly(archive):
    path, fmt = archive
    run = list(items(path, fmt, LIMITS))
    for k, (_, cursor) in enumerate(run):
        rest = [(i.index, i.custom_id) for i, _ in items(path, fmt, LIMITS, cursor)]
        assert rest == [(i.index, i.custom_id) for i, _ in run[k + 1:]]


def test_jsonl_lines_numbered_blank_lines_skipped_bad_lines_fail_alone(tmp_path):
    lines = [json.dumps({"custom_id": "a", "b64": "AAAA"}), "", "not json",
             json.dumps(["a list"]), json.dumps({"b64": "x"}), json.dumps({"custom_id": "e",
                                                                          "inputs": [1, 2]})]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert sniff(head(path)) == JSONL
    got = list(items(str(path), JSONL, LIMITS))
    assert [(i.index, i.line, i.custom_id, i.error and i.error[0]) for i, _ in got] == [
        (0, 1, "a", None), (1, 3, "line-3", "invalid_json"), (2, 4, "line-4", "invalid_input"),
        (3, 5, "line-5", "invalid_custom_id"), (4, 6, "e", None)]
    assert got[0][0].fields == {"custom_id": "a", "b64": "AAAA"}
    # Resumed after the third input, the lines keep their numbers.
    rest = list(items(str(path), JSONL, LIMITS, got[2][1]))
    assert [(i.index, i.line) for i, _ in rest] == [(3, 5), (4, 6)]


def test_a_line_over_the_input_limit_fails_alone_and_the_next_is_read(tmp_path):
    path = tmp_path / "in.jsonl"
    big = json.dumps({"custom_id": "big", "b64": "A" * 20_000})
    path.write_text(big + "\n" + json.dumps({"custom_id": "ok", "b64": "AA=="}) + "\n")
    got = [i for i, _ in items(str(path), JSONL, LIMITS)]
    assert [(i.custom_id, i.error and i.error[0]) for i in got] == [("line-1", "too_large"),
                                                                     ("ok", None)]


def test_duplicate_ids_fail_the_whole_file_naming_the_lines(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"custom_id": c, "b64": "AA=="}) + "\n"
                            for c in ["a", "b", "a", "c", "b"]))
    with pytest.raises(FileProblem) as err:
        scan(str(path), JSONL, LIMITS)
    assert [(p["code"], p["line"]) for p in err.value.problems] == [
        ("duplicate_custom_id", 3), ("duplicate_custom_id", 5)]


def test_more_inputs_than_the_limit_fail_the_file(tmp_path):
    path = make_tar([(f"{i}.png", b"x") for i in range(6)], tmp_path / "in.tar")
    with pytest.raises(FileProblem) as err:
        scan(path, TAR, Limits(max_inputs=5, max_input_bytes=100, max_total_bytes=10_000))
    assert err.value.problems[0]["code"] == "too_many_inputs"
    assert "INFERQ_BATCH_MAX_INPUTS" in err.value.problems[0]["message"]


def test_a_member_over_the_input_limit_fails_alone(tmp_path):
    path = make_zip([("big.png", b"x" * 20_000), ("ok.png", b"y")], tmp_path / "in.zip")
    got = [i for i, _ in items(path, ZIP, LIMITS)]
    assert [(i.custom_id, i.error and i.error[0], i.data) for i in got] == [
        ("big.png", "too_large", None), ("ok.png", None, b"y")]


def test_a_gzip_bomb_is_refused_while_unpacking(tmp_path):
    path = make_tar([(f"{i}.png", b"\0" * 500_000) for i in range(8)], tmp_path / "in",
                    compress=True)
    assert (tmp_path / "in").stat().st_size < 50_000
    with pytest.raises(FileProblem) as err:
        prepare(path, TAR_GZ, str(tmp_path / "plain.tar"), LIMITS)
    assert err.value.problems[0]["code"] == "too_large"


def test_gzip_of_something_else_and_unknown_content(tmp_path):
    path = tmp_path / "in.gz"
    path.write_bytes(gzip.compress(b"just text\n" * 100))
    with pytest.raises(FileProblem) as err:
        prepare(str(path), TAR_GZ, str(tmp_path / "plain.tar"), LIMITS)
    assert err.value.problems[0]["code"] == "unsupported_media_type"
    assert sniff(b"\x89PNG\r\n\x1a\n" + b"\0" * 600) is None
    assert sniff(b"hello") is None
    assert sniff(b"\xef\xbb\xbf  {\"custom_id\": 1}") == JSONL


def test_odd_member_names_are_only_ids(tmp_path):
    long_name = "d/" * 300 + "x.png"
    path = tmp_path / "in.tar"
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as tar:
        for name in ("caf\udce9.png", long_name):  # a Latin-1 byte, not UTF-8
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"z"))
        link = tarfile.TarInfo("link.png")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    got = [i for i, _ in items(str(path), TAR, LIMITS)]
    assert got[0].custom_id == "caf\\xe9.png" and got[0].data == b"z"
    assert got[1].error[0] == "invalid_custom_id" and len(got[1].custom_id) == 512
    assert got[2].custom_id == "link.png" and got[2].error[0] == "invalid_input"
    assert not list(tmp_path.glob("**/passwd")) and not list(tmp_path.glob("d"))


def test_a_truncated_tar_fails_the_file(tmp_path):
    path = make_tar([("a.png", b"a" * 3000), ("b.png", b"b" * 3000)], tmp_path / "in.tar")
    data = open(path, "rb").read()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[:3700])
    with pytest.raises(FileProblem):
        scan(str(cut), TAR, LIMITS)
    cut.write_bytes(data[:2000])  # inside the first file's bytes
    with pytest.raises(FileProblem):
        scan(str(cut), TAR, LIMITS)
