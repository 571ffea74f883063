"""Path and key safety. Traversal attempts ('..', encoded dots, leading
'/', backslashes, NUL, URL-encoded keys, symlinks planted in scratch or outputs) against
uris, storage, Stage Inputs, Collect Outputs, Cleanup, the step contract and the local
engine's S3 emulation: 0 escapes from the run's prefix or scratch directory; cleanup
never follows a symlink and never touches another run."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foldstack import storage
from foldstack.core.errors import FoldstackError, InputValidationError
from foldstack.core.uris import is_under, join_under, parse_uri, require_under
from tests.conftest import files_under
from tests.reliability.helpers import SEQ, all_keys, empty_buckets, load_handler, snapshot, valid_event

validate, stage, publish_batch, collect_outputs, cleanup = (
    load_handler(n) for n in ("validate_input", "stage_inputs", "publish_batch", "collect_outputs", "cleanup")
)


def collect(event):
    """The two Lambdas that read step outputs and publish them: Publish Batch (the event's
    targets as one batch whose Predict job succeeded), then Collect Outputs."""
    targets = event["targets"]
    batch = {"batch": "b00000", "size_class": targets[0]["size_class"],
             "target_ids": ",".join(t["id"] for t in targets),
             "targets": [{k: t[k] for k in ("id", "sha256", "length", "chains")} for t in targets]}
    publish_batch({"run_id": event["run_id"], "request": event["request"], "batch": batch, "msa": [],
                   "predict": {"failed": False}})
    return collect_outputs(event)

TRAVERSAL_PARTS = [
    "..", "../x", "../../etc/passwd", "a/../../x", "a/..", "./x", ".", "x/./y",
    "%2e%2e", "%2E%2E/x", "..%2f..%2fx", "%2e%2e%2fx", "a%2fb", "a%2F..", "%2e./x", ".%2e/x", "%00", "a%00b",
    "/etc/passwd", "/", "", "\\..\\x", "a\\b", "..\\..\\x",
    "a\x00b", "x\x00/../y", "a\nb", "a\rb", "a\x7fb", "a\x1bb",
]


@pytest.mark.parametrize("base", ["/srv/scratch/run-1", "s3://scratch/run-1"])
@pytest.mark.parametrize("part", TRAVERSAL_PARTS)
def test_join_under_refuses_traversal(base, part):
    with pytest.raises(InputValidationError) as info:
        join_under(base, "predict", part)
    assert info.value.code == "unsafe_uri"


@settings(max_examples=200, deadline=None, database=None)
@given(parts=st.lists(st.text(alphabet=st.sampled_from(list("ab./%2eE\\\x00-_")), min_size=1, max_size=8),
                      min_size=1, max_size=3))
def test_whatever_join_under_accepts_stays_under_its_base(parts):
    for base in ("/srv/scratch/run-1", "s3://scratch/run-1"):
        try:
            joined = join_under(base, *parts)
        except InputValidationError:
            continue
        try:
            key = parse_uri(joined).key
        except InputValidationError:
            continue  # unusable: every storage call parses its URI first (see the xfail below)
        assert is_under(joined, base), (base, parts, joined)
        assert ".." not in key.split("/") and "\\" not in key and "\x00" not in key


def test_join_under_and_parse_uri_agree_on_empty_segments():
    with pytest.raises(InputValidationError):
        join_under("s3://scratch/run-1", "a//b")


@pytest.mark.parametrize("uri", [
    "s3://lake/inputs/../results/x", "s3://lake/inputs/%2e%2e/results", "s3://lake/inputs/a\\..\\b",
    "s3://lake/inputs/a\x00", "/srv/in/../out", "/srv/in/%2e%2e/out", "file:///srv/in/../../etc",
])
def test_require_under_refuses_encoded_and_literal_traversal(uri):
    with pytest.raises(InputValidationError):
        require_under(uri, ["s3://lake/inputs", "/srv/in"], what="input")


def test_prefix_match_is_segment_wise():
    assert not is_under("s3://lake/inputs-evil/x", "s3://lake/inputs")
    assert not is_under("/srv/inputs-evil/x", "/srv/inputs")
    assert not is_under("s3://lake2/inputs/x", "s3://lake/inputs")
    assert not is_under("s3://lake//inputs/x", "s3://lake/inputs")


def test_symlink_under_an_allowed_prefix_pointing_outside_is_denied(local_env, tmp_path):
    secret = tmp_path / "secret.fasta"
    secret.write_text(f">s\n{SEQ}\n")
    link = local_env["inputs"] / "innocent.fasta"
    link.symlink_to(secret)
    (local_env["inputs"] / "dir").symlink_to(tmp_path, target_is_directory=True)
    for uri in (str(link), str(local_env["inputs"] / "dir" / "secret.fasta")):
        event = {"run_id": "x-1-0000000000000000",
                 "request": {"inputs": [uri], "output_uri": str(local_env["outputs"]), "engine": "esmfold"}}
        with pytest.raises(FoldstackError) as info:
            validate(event)
        assert info.value.code == "access_denied"
    out_link = local_env["outputs"] / "elsewhere"
    out_link.symlink_to(tmp_path, target_is_directory=True)
    fasta = local_env["inputs"] / "ok.fasta"
    fasta.write_text(f">s\n{SEQ}\n")
    with pytest.raises(FoldstackError) as info:
        validate({"run_id": "x", "request": {"inputs": [str(fasta)], "output_uri": str(out_link)}})
    assert info.value.code == "access_denied"


# -- storage -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["read", "write", "delete", "list", "exists", "copy_src", "copy_dst"])
@pytest.mark.parametrize("uri", ["{root}/../x", "{root}/%2e%2e/x", "{root}/a\\..\\x", "{root}/a\x00"])
def test_storage_refuses_traversal(op, uri, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "x").write_text("outside")
    before = snapshot(tmp_path)
    target = uri.format(root=root)
    calls = {
        "read": lambda: storage.read_bytes(target),
        "write": lambda: storage.write_bytes(target, b"pwned"),
        "delete": lambda: storage.delete_prefix(target),
        "list": lambda: list(storage.list_prefix(target)),
        "exists": lambda: storage.exists(target),
        "copy_src": lambda: storage.copy(target, str(root / "y")),
        "copy_dst": lambda: storage.copy(str(tmp_path / "x"), target),
    }
    with pytest.raises(InputValidationError):
        calls[op]()
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("root", ["/", "s3://bucket", "s3://bucket/", "s3://bucket//", "file:///"])
def test_storage_refuses_to_list_or_delete_a_root(root):
    with pytest.raises(InputValidationError):
        storage.delete_prefix(root)
    with pytest.raises(InputValidationError):
        list(storage.list_prefix(root))


def test_storage_never_copies_or_lists_symlinks(tmp_path):
    (tmp_path / "secret").write_text("secret")
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(tmp_path / "secret")
    (root / "dirlink").symlink_to(tmp_path, target_is_directory=True)
    (root / "real").write_text("ok")
    assert [Path(i.uri).name for i in storage.list_prefix(str(root))] == ["real"]
    with pytest.raises(InputValidationError):
        storage.copy(str(root / "link"), str(root / "copy"))
    assert storage.delete_prefix(str(root)) >= 1
    assert (tmp_path / "secret").read_text() == "secret" and not root.exists()


def test_s3_delete_prefix_is_segment_wise(moto_s3):
    s3 = moto_s3
    empty_buckets(s3)
    keys = ["run-1-abc/input/a", "run-1-abc/predict/t/x", "run-1-abcd/input/a", "run-1-abc-2/x", "run-1-ab",
            "other/run-1-abc/x"]
    for k in keys:
        s3.put_object(Bucket="scratch", Key=k, Body=b"x")
    assert storage.delete_prefix("s3://scratch/run-1-abc") == 2
    assert all_keys(s3)["scratch"] == sorted(k for k in keys if not k.startswith("run-1-abc/"))
    empty_buckets(s3)


# -- a staged run on local directories ---------------------------------------------------------------


@pytest.fixture
def staged(local_env, tmp_path):
    """A validated and staged run, plus an `outside` dir and another run's scratch and output."""
    data = f">t1\n{SEQ}\n"
    fasta = local_env["inputs"] / "a.fasta"
    fasta.write_text(data)
    event = valid_event(str(fasta), str(local_env["outputs"]), data)
    targets = validate(event)["targets"]
    stage({**event, "targets": targets})
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"TOPSECRET")
    other_scratch = local_env["scratch"] / "other-1-0123456789abcdef"
    (other_scratch / "predict" / "t1").mkdir(parents=True)
    (other_scratch / "predict" / "t1" / "ranked_0.pdb").write_text("other run")
    other_out = local_env["outputs"] / "other-1-0123456789abcdef"
    other_out.mkdir()
    (other_out / "manifest.json").write_text("{}")
    return {**local_env, "event": event, "targets": targets, "run_id": event["run_id"], "outside": outside,
            "other_scratch": other_scratch, "other_out": other_out, "root": tmp_path}


def _protected(s) -> dict:
    return {"outside": snapshot(s["outside"]), "other_scratch": snapshot(s["other_scratch"]),
            "other_out": snapshot(s["other_out"]), "inputs": snapshot(s["inputs"])}


def _step_outputs(s, files: dict[str, bytes], *, listed: dict[str, str] | None = None, step="predict"):
    d = s["scratch"] / s["run_id"] / step / "t1"
    d.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(data)
    outputs = listed if listed is not None else {rel: hashlib.sha256(b).hexdigest() for rel, b in files.items()}
    (d / f"{step}.done.json").write_text(json.dumps({"step": step, "outputs": outputs}))
    return d


def _published(s) -> list[str]:
    run_out = s["outputs"] / s["run_id"]
    partial = [p for p in s["outputs"].iterdir() if p.name.startswith(f".{s['run_id']}.partial-")]
    return [str(p) for p in files_under(run_out)] + [str(p) for p in partial]


@pytest.mark.parametrize("rel", ["../../x", "../t2/ranked_0.pdb", "/etc/passwd", "..\\..\\x", "%2e%2e/x",
                                 "a/../../b", "", "x\x00", "./ranked_0.pdb", "plots/../../../../x"])
def test_collect_refuses_done_file_paths_that_leave_the_step_dir(staged, rel):
    s = staged
    before = _protected(s)
    _step_outputs(s, {"ranked_0.pdb": b"ATOM\n", "metrics.json": b"{}"},
                  listed={"ranked_0.pdb": hashlib.sha256(b"ATOM\n").hexdigest(),
                          rel: hashlib.sha256(b"TOPSECRET").hexdigest()})
    with pytest.raises(FoldstackError):
        collect({**s["event"], "targets": s["targets"]})
    assert _published(s) == []
    assert _protected(s) == before


@pytest.mark.parametrize("tid", ["../other-1-0123456789abcdef", "..", "/abs", "t1/../../x", "%2e%2e", "a\\b", ""])
def test_collect_refuses_tampered_target_ids(staged, tid):
    s = staged
    before = _protected(s)
    _step_outputs(s, {"ranked_0.pdb": b"ATOM\n", "metrics.json": b"{}"})
    targets = [{**s["targets"][0], "id": tid}]
    with pytest.raises(FoldstackError):
        collect({**s["event"], "targets": targets})
    assert _published(s) == []
    assert _protected(s) == before


SYMLINK_BUG = ("BUG: collect reads step outputs with storage.read_bytes, which follows symlinks; a link "
               "planted in scratch publishes a file from outside the run's scratch dir")


@pytest.mark.parametrize("planted", ["output_file", "metrics", "done_file", "target_dir"])
def test_collect_never_publishes_through_a_symlink(staged, planted):
    """Each planted link leads to content marked TOPSECRET (outside) or 'other run'."""
    s = staged
    outside = s["outside"]
    d = s["scratch"] / s["run_id"] / "predict" / "t1"
    sha = {b: hashlib.sha256(b).hexdigest() for b in (b"ATOM\n", b"{}", b"TOPSECRET", b"other run")}
    if planted == "target_dir":  # the whole target dir points at another run's results
        other = s["other_scratch"] / "predict" / "t1"
        (other / "metrics.json").write_text("{}")
        (other / "predict.done.json").write_text(json.dumps({"step": "predict", "outputs": {
            "ranked_0.pdb": sha[b"other run"]}}))
        d.parent.mkdir(parents=True, exist_ok=True)
        d.symlink_to(other, target_is_directory=True)
    elif planted == "output_file":
        _step_outputs(s, {"metrics.json": b"{}"}, listed={"ranked_0.pdb": sha[b"TOPSECRET"]})
        (d / "ranked_0.pdb").symlink_to(outside / "secret.txt")
    elif planted == "metrics":
        _step_outputs(s, {"ranked_0.pdb": b"ATOM\n"})
        (outside / "metrics.json").write_text('{"leak": "TOPSECRET"}')
        (d / "metrics.json").symlink_to(outside / "metrics.json")
    else:
        _step_outputs(s, {"ranked_0.pdb": b"ATOM\n", "metrics.json": b"{}"})
        (outside / "done.json").write_text(json.dumps({"step": "predict", "tool_versions": {"x": "TOPSECRET"},
                                                       "outputs": {"ranked_0.pdb": sha[b"ATOM\n"]}}))
        (d / "predict.done.json").unlink()
        (d / "predict.done.json").symlink_to(outside / "done.json")
    before = _protected(s)
    with contextlib.suppress(FoldstackError):
        collect({**s["event"], "targets": s["targets"]})
    assert _protected(s) == before
    published = b"".join(Path(p).read_bytes() for p in _published(s) if Path(p).is_file())
    assert b"TOPSECRET" not in published and b"other run" not in published, f"published through a {planted} link"


STAGE_BUG = ("BUG: stage writes through symlinks that already exist in the run's scratch dir "
             "(storage.write_bytes/copy follow them), so a planted link redirects staging outside scratch")


@pytest.mark.parametrize("planted", [
    "run_dir",
    "input_dir",
    "targets_dir",
    "target_file",  # a link at the file itself is replaced (write to temp + rename), never followed
])
def test_stage_never_writes_through_a_symlink(local_env, tmp_path, planted):
    data = f">t1\n{SEQ}\n"
    fasta = local_env["inputs"] / "a.fasta"
    fasta.write_text(data)
    event = valid_event(str(fasta), str(local_env["outputs"]), data)
    targets = validate(event)["targets"]
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "t1.fasta").write_text("victim")
    run_dir = local_env["scratch"] / event["run_id"]
    if planted == "run_dir":
        run_dir.symlink_to(outside, target_is_directory=True)
    else:
        (run_dir / "input" / "targets").mkdir(parents=True)
        if planted == "input_dir":
            (run_dir / "input" / "targets").rmdir()
            (run_dir / "input").rmdir()
            (run_dir / "input").symlink_to(outside, target_is_directory=True)
        elif planted == "targets_dir":
            (run_dir / "input" / "targets").rmdir()
            (run_dir / "input" / "targets").symlink_to(outside, target_is_directory=True)
        else:
            (run_dir / "input" / "targets" / "t1.fasta").symlink_to(outside / "t1.fasta")
    before = snapshot(outside)
    with contextlib.suppress(FoldstackError):
        stage({**event, "targets": targets})
    assert snapshot(outside) == before


def test_stage_copies_only_validated_sources_into_the_run_dir(staged):
    s = staged
    run_dir = s["scratch"] / s["run_id"]
    for p in files_under(run_dir):
        assert os.path.realpath(p).startswith(os.path.realpath(run_dir) + os.sep)
        assert not p.is_symlink()
    assert sorted(p.relative_to(run_dir).as_posix() for p in files_under(run_dir)) == [
        "input/request.json", "input/sources/000-a.fasta", "input/stage.done.json", "input/targets.json",
        "input/targets/t1.fasta"]


# -- cleanup -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("run_id", [
    "..", "../x", "../../etc", "/", "/tmp", "x/../../y", "%2e%2e", "a/b", "", None, 123, ["x"], "a b", "x" * 81, ".",
    "-", "a\x00", "other-1-0123456789abcdef/..",
])
def test_cleanup_with_a_malformed_run_id_touches_nothing(staged, run_id):
    s = staged
    before = {k: snapshot(s[k]) for k in ("scratch", "outputs", "outside", "inputs")}
    result = cleanup({"run_id": run_id, "request": s["event"]["request"], "failed": True})
    assert result["scratch_deleted"] == 0 and result["partial_outputs_deleted"] == 0
    assert {k: snapshot(s[k]) for k in ("scratch", "outputs", "outside", "inputs")} == before


def test_cleanup_with_a_trailing_newline_run_id_is_a_no_op(staged):
    result = cleanup({"run_id": f"{staged['run_id']}\n", "failed": True})
    assert result["scratch_deleted"] == 0


@pytest.mark.parametrize("planted", ["file_to_outside", "dir_to_outside", "dir_to_other_run", "file_to_other_run",
                                     "run_dir_is_link", "nested_dir_link", "dangling", "link_to_scratch_root"])
def test_cleanup_deletes_links_never_their_targets(staged, planted):
    s = staged
    run_dir = s["scratch"] / s["run_id"]
    links = {
        "file_to_outside": (run_dir / "predict" / "t1" / "ranked_0.pdb", s["outside"] / "secret.txt"),
        "dir_to_outside": (run_dir / "msa", s["outside"]),
        "dir_to_other_run": (run_dir / "predict" / "t9", s["other_scratch"]),
        "file_to_other_run": (run_dir / "input" / "x.pdb", s["other_scratch"] / "predict" / "t1" / "ranked_0.pdb"),
        "nested_dir_link": (run_dir / "predict" / "deep" / "er" / "l", s["root"]),
        "dangling": (run_dir / "gone", s["root"] / "does-not-exist"),
        "link_to_scratch_root": (run_dir / "up", s["scratch"]),
    }
    if planted == "run_dir_is_link":
        import shutil

        shutil.rmtree(run_dir)
        run_dir.symlink_to(s["other_scratch"], target_is_directory=True)
    else:
        link, target = links[planted]
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target, target_is_directory=target.is_dir())
    before = _protected(s)
    others = sorted(p.name for p in s["scratch"].iterdir() if p.name != s["run_id"])
    cleanup({"run_id": s["run_id"], "request": s["event"]["request"], "failed": True})
    assert not os.path.lexists(run_dir)
    assert _protected(s) == before
    assert sorted(p.name for p in s["scratch"].iterdir()) == others


def test_failed_cleanup_removes_only_this_runs_partial_outputs(staged):
    s = staged
    run_id = s["run_id"]
    out = s["outputs"]
    (out / run_id / "t1").mkdir(parents=True)
    (out / run_id / "t1" / "ranked_0.pdb").write_text("partial")
    (out / f".{run_id}.partial-abc").mkdir()
    (out / f".{run_id}.partial-link").symlink_to(s["outside"], target_is_directory=True)
    (out / f".{run_id}x.partial-zzz").mkdir()  # not this run's
    (out / f"{run_id}-2").mkdir()
    before = _protected(s)
    result = cleanup({**s["event"], "failed": True})
    assert result["partial_outputs_deleted"] >= 2
    assert sorted(p.name for p in out.iterdir()) == sorted([f".{run_id}x.partial-zzz", f"{run_id}-2",
                                                             s["other_out"].name])
    assert _protected(s) == before


def test_failed_cleanup_never_deletes_a_complete_run_behind_a_link(staged):
    s = staged
    (s["outputs"] / s["run_id"]).symlink_to(s["other_out"], target_is_directory=True)
    before = _protected(s)
    cleanup({**s["event"], "failed": True})
    assert _protected(s) == before


def test_cleanup_on_s3_stays_in_the_run_prefix(moto_s3):
    s3 = moto_s3
    empty_buckets(s3)
    data = f">t1\n{SEQ}\n"
    s3.put_object(Bucket="lake", Key="inputs/a.fasta", Body=data.encode())
    event = valid_event("s3://lake/inputs/a.fasta", "s3://lake/results", data)
    run_id = event["run_id"]
    for k in (f"{run_id}/input/a", f"{run_id}x/keep", f"{run_id}-2/keep", "keep"):
        s3.put_object(Bucket="scratch", Key=k, Body=b"x")
    for k in (f"results/{run_id}/t1/ranked_0.pdb", f"results/{run_id}-2/t1/x", f"results/{run_id}x/manifest.json",
              "results/other/manifest.json", f"inputs/{run_id}/x"):
        s3.put_object(Bucket="lake", Key=k, Body=b"x")
    result = cleanup({**event, "failed": True})
    assert result == {"run_id": run_id, "scratch_deleted": 1, "partial_outputs_deleted": 1, "kept_targets": 0}
    keys = all_keys(s3)
    assert keys["scratch"] == sorted([f"{run_id}x/keep", f"{run_id}-2/keep", "keep"])
    assert f"results/{run_id}/t1/ranked_0.pdb" not in keys["lake"] and len(keys["lake"]) == 5
    empty_buckets(s3)


# -- the step contract and the local engine ----------------------------------------------------------


@pytest.mark.parametrize(("run_id", "target"), [
    ("../x", "t1"), ("..", "t1"), ("a/b", "t1"), ("", "t1"), ("x" * 81, "t1"), ("/abs", "t1"), ("a\x00", "t1"),
    ("run-1", "../t"), ("run-1", ".."), ("run-1", "a/b"), ("run-1", ".hidden"), ("run-1", "/abs"),
    ("run-1", "input"), ("run-1", "a\\b"), ("run-1", ""), ("run-1", "%2e%2e"),
])
def test_step_contract_refuses_ids_that_would_leave_scratch(tmp_path, run_id, target):
    from foldstack.core.errors import BadInputError
    from foldstack.steps.common import run_step

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    called = []
    with pytest.raises(BadInputError):
        run_step("predict", run_id, target, scratch, called.append)
    assert called == [] and files_under(tmp_path) == []


@pytest.mark.parametrize("key", ["../x", "../../etc/passwd", "a/../../x", "/etc/passwd", "link/secret.txt"])
def test_local_engine_s3_keys_never_leave_their_bucket(tmp_path, key):
    from foldstack.local.engine import LocalEngine

    bucket = tmp_path / "s3" / "bucket"
    bucket.mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("x")
    (bucket / "link").symlink_to(tmp_path, target_is_directory=True)
    engine = LocalEngine.__new__(LocalEngine)
    engine.s3_root = tmp_path / "s3"
    with pytest.raises(PermissionError):
        engine.resolve_s3("bucket", key)
    assert engine.resolve_s3("bucket", "ok/x.json") == (bucket / "ok" / "x.json").resolve()
