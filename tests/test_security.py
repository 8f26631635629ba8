"""The threat model of SECURITY.md, one test per guarantee: every hostile input is made here,
none is kept in git, and each refusal is a row with its reason or a one-line message."""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import write_case_bundle
from vehiclust import ownership
from vehiclust.collection import ingest
from vehiclust.collection.descriptor_files import DescriptorLimits, load_descriptor_file
from vehiclust.collection.imageio import IMAGE_SUFFIXES, open_image, probe, zip_location
from vehiclust.collection.ingest import IngestSettings
from vehiclust.errors import InputError, VehiclustError, fault_message
from vehiclust.runfolder import RunFolder, write_text


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


@pytest.fixture
def images(tmp_path, photo_folder) -> Path:
    root = tmp_path / "images"
    shutil.copytree(photo_folder, root)
    return root


def jpeg_bytes(colour=(200, 30, 30), size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG")
    return buffer.getvalue()


# -- 1. no code from the input runs -----------------------------------------------------------

class RunsACommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_would_run_a_command_is_refused(tmp_path, images):
    marker = tmp_path / "the_command_ran"
    bundle = tmp_path / "vectors"
    bundle.mkdir()
    with open(bundle / "evil.pickle", "wb") as fh:
        pickle.dump([RunsACommand(marker), np.zeros((3, 2))], fh)
    run = RunFolder(tmp_path / "run")
    table = ingest(images, run, [bundle / "evil.pickle"])  # skipped: the images are still ingested
    (message,) = run.stage_record("ingest")["skipped_descriptor_files"]
    assert not marker.exists() and len(table) == sum(1 for _ in images.rglob("*.jpg"))
    assert str(bundle / "evil.pickle") in message and "--trust-pickles" in message and "posix.system" in message
    with pytest.raises(InputError, match="posix.system"):  # alone, it is the whole input: an error
        ingest(bundle / "evil.pickle", RunFolder(tmp_path / "run2"))
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickled_arrays_lists_and_dicts_are_accepted(tmp_path, protocol):
    matrix = np.random.default_rng(0).normal(size=(20, 3))
    for name, obj in (("array", matrix.astype(np.float32)), ("lists", matrix.tolist()),
                      ("keyed", {f"img{i}.jpg": row for i, row in enumerate(matrix)})):
        path = tmp_path / f"{name}.pickle"
        path.write_bytes(pickle.dumps(obj, protocol=protocol))
        loaded = load_descriptor_file(path)
        np.testing.assert_allclose(np.asarray(loaded.matrix, dtype=np.float64), matrix, rtol=1e-6)


def test_pickled_dataframe_needs_trust(tmp_path):
    path = tmp_path / "frame.pickle"
    pd.DataFrame(np.ones((4, 2))).to_pickle(path)
    with pytest.raises(InputError, match="--trust-pickles"):
        load_descriptor_file(path)
    assert load_descriptor_file(path, limits=DescriptorLimits(trust_pickles=True)).matrix.shape == (4, 2)


def test_eps_is_never_handed_to_ghostscript():
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with pytest.raises(Exception, match="not a recognised image format"):
        open_image(eps)
    assert ".eps" not in IMAGE_SUFFIXES and ".ps" not in IMAGE_SUFFIXES


# -- 2. reads stay inside the input ----------------------------------------------------------

def test_bundle_path_with_dotdot_is_never_read(tmp_path, photo_folder):
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "x.png").write_bytes(jpeg_bytes())
    bundle = tmp_path / "case"
    good = sorted(p.relative_to(photo_folder).as_posix() for p in photo_folder.rglob("*.jpg"))[:3]
    paths = [f"veriwild/1/{p}" for p in good] + ["veriwild/../../../secret/x.png"]
    write_case_bundle(bundle, paths, {"osnet": np.ones((len(paths), 4))})
    for p in good:
        target = bundle / "raw_data" / "veriwild" / "1" / p
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo_folder / p, target)
    table = ingest(bundle, RunFolder(tmp_path / "run"))
    row = table.iloc[-1]
    assert row["error"].startswith("outside_input") and row["location"] == "" and row["content_hash"] == ""
    assert (table["error"].iloc[:-1] == "").all()


def test_links_out_of_the_input_and_special_files_are_rows_with_reasons(tmp_path, images):
    outside = tmp_path / "elsewhere.jpg"
    outside.write_bytes(jpeg_bytes())
    (images / "00001" / "linked.jpg").symlink_to(outside)
    (images / "00001" / "zero.jpg").symlink_to("/dev/zero")
    os.mkfifo(images / "00001" / "pipe.jpg")
    (images / "linked_folder").symlink_to(tmp_path, target_is_directory=True)
    started = time.monotonic()
    table = ingest(images, RunFolder(tmp_path / "run")).set_index("path")
    assert time.monotonic() - started < 60  # neither the FIFO nor /dev/zero held it up
    assert table.loc["00001/linked.jpg", "error"].startswith("outside_input")
    assert table.loc["00001/zero.jpg", "error"].startswith("outside_input")
    assert table.loc["00001/pipe.jpg", "error"].startswith("not_a_regular_file")
    assert not any(p.startswith("linked_folder") for p in table.index)
    from vehiclust.collection import detect_input

    assert any("linked_folder" in w and "--follow-links" in w for w in detect_input(images).warnings)
    followed = ingest(images, RunFolder(tmp_path / "run2"), settings=IngestSettings(follow_links=True)).set_index("path")
    assert followed.loc["00001/linked.jpg", "error"] == "" and followed.loc["00001/linked.jpg", "width"] == 64
    assert followed.loc["00001/zero.jpg", "error"].startswith("not_a_regular_file")


def bundle_with_a_linked_descriptor(tmp_path, good: dict[str, np.ndarray]) -> tuple[Path, Path]:
    """A bundle without images whose descriptors/vdc_type.pickle links to a valid pickle of the
    right shape outside it: imported only if the link were followed."""
    paths = [f"veriwild/1/{i:05d}/{i:06d}.jpg" for i in range(6)]
    bundle = write_case_bundle(tmp_path / "case", paths, good)
    outside = tmp_path / "outside.pickle"
    outside.write_bytes(pickle.dumps(np.ones((len(paths), 3))))
    link = bundle / "descriptors" / "vdc_type.pickle"
    link.symlink_to(outside)
    return bundle, link


def test_a_descriptor_linked_out_of_the_bundle_is_skipped_and_the_others_kept(tmp_path):
    osnet = np.random.default_rng(0).normal(size=(6, 4))
    bundle, link = bundle_with_a_linked_descriptor(tmp_path, {"osnet": osnet})
    run = RunFolder(tmp_path / "run")
    table = ingest(bundle, run)
    assert len(table) == 6 and run.descriptor_names() == ["osnet"]
    np.testing.assert_allclose(np.asarray(run.load_descriptor("osnet")), osnet, rtol=1e-6)
    (message,) = run.stage_record("ingest")["skipped_descriptor_files"]
    assert str(link) in message and "refused: outside_input" in message and "\n" not in message


def test_a_bundle_whose_only_descriptor_links_out_of_it_is_one_line_error(tmp_path):
    bundle, link = bundle_with_a_linked_descriptor(tmp_path, {})
    with pytest.raises(InputError, match="refused: outside_input") as info:
        ingest(bundle, RunFolder(tmp_path / "run"))
    assert str(link) in one_line(info)


def test_vehicle_info_beside_the_input_is_not_read(tmp_path, images):
    (tmp_path / "vehicle_info.txt").write_text("id/image;Camera ID;Time;Model;Type;Color\n")
    table = ingest(images, RunFolder(tmp_path / "run"))
    assert "camera_id" not in table.columns


def test_zip_bomb_member_is_refused_by_its_size(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("a/1/x.jpg", "w") as member:
        block = bytes(1 << 20)
        for _ in range(64):
            member.write(block)
    assert archive.stat().st_size < 1 << 20
    result = probe(zip_location(archive, "a/1/x.jpg"), max_bytes=16 << 20)
    assert "too large" in result.error and "--max-image-bytes" in result.error


def test_oversized_image_file_is_a_row(tmp_path, images):
    table = ingest(images, RunFolder(tmp_path / "run"), settings=IngestSettings(max_image_bytes=1000))
    assert table["error"].str.contains("--max-image-bytes").all()


def test_parquet_with_too_many_rows_is_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "many.parquet"
    pd.DataFrame({"a": np.zeros(200_000, np.float32)}).to_parquet(path)
    monkeypatch.setattr(pd, "read_parquet", lambda *a, **k: pytest.fail("decoded before the check"))
    with pytest.raises(InputError) as info:
        load_descriptor_file(path, limits=DescriptorLimits(max_rows=100_000))
    assert "--max-descriptor-rows" in one_line(info) and str(path) in str(info.value)
    with pytest.raises(InputError, match="--max-descriptor-bytes"):
        load_descriptor_file(path, limits=DescriptorLimits(max_bytes=1 << 20))


# -- 3. writes never touch what vehiclust did not write --------------------------------------

def test_out_that_is_or_lies_inside_the_input_is_refused(tmp_path, images):
    for out in (images, images / "run"):
        with pytest.raises(VehiclustError, match="input folder"):
            ingest(images, RunFolder(out))
    assert not (images / "run").exists() and not (images / ".vehiclust").exists()


def test_foreign_folder_refused_unless_force_and_its_files_survive(tmp_path, images):
    out = tmp_path / "mine"
    (out / "thumbs").mkdir(parents=True)
    (out / "thumbs" / "holiday.jpg").write_bytes(b"my holiday")
    with pytest.raises(VehiclustError, match="--force"):
        ingest(images, RunFolder(out))
    ingest(images, RunFolder(out), force=True)
    from vehiclust.report.thumbnails import ensure_thumbnails

    run = RunFolder(out)
    table = run.load_collection()
    made = ensure_thumbnails(run, table, [0, 1])
    assert len(made) == 2 and (out / "thumbs" / "holiday.jpg").read_bytes() == b"my holiday"
    changed = table.assign(content_hash="other")  # another collection: the cache is dropped
    ensure_thumbnails(run, changed, [])
    assert (out / "thumbs" / "holiday.jpg").read_bytes() == b"my holiday"
    assert not (out / "thumbs" / "0" / "0.jpg").exists()


def test_a_file_vehiclust_did_not_write_is_never_replaced(tmp_path, images):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "report.html").write_text("my own report")
    ingest(images, RunFolder(out), force=True)
    with pytest.raises(VehiclustError, match="not written by vehiclust"):
        write_text(out / "report.html", "vehiclust's report")
    assert (out / "report.html").read_text() == "my own report"
    write_text(out / "clusters.csv", "a")
    write_text(out / "clusters.csv", "b")  # its own file: replaced
    assert (out / "clusters.csv").read_text() == "b"


def test_second_concurrent_run_stops_naming_the_first(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from vehiclust import ownership; "
         f"ownership.claim({str(out)!r}); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(VehiclustError) as info:
            ownership.claim(out)
        assert time.monotonic() - started < 5
        assert f"pid {holder.pid}" in one_line(info) and "another vehiclust run" in str(info.value)
    finally:
        holder.kill()
        holder.wait()
    with ownership.claimed(out):  # the kernel released the killed holder's lock
        pass


def test_killed_run_leaves_no_temporary_files_behind(tmp_path):
    out = tmp_path / "run"
    with ownership.claimed(out):
        from vehiclust.runfolder import atomic_path

        with pytest.raises(RuntimeError), atomic_path(out / "collection.parquet") as tmp:
            tmp.write_bytes(b"half")
            leftover = out / ".stale.tmp"
            shutil.copy(tmp, leftover)  # what a SIGKILL between write and rename leaves
            ownership.temporary(leftover)
            raise RuntimeError
    assert not (out / "collection.parquet").exists()
    with ownership.claimed(out):
        assert not leftover.exists()


def test_a_forged_manifest_in_out_deletes_nothing_vehiclust_did_not_leave(tmp_path):
    out, outside = tmp_path / "run", tmp_path / "outside"
    (out / ".vehiclust").mkdir(parents=True)
    outside.mkdir()
    victims = [tmp_path / "victim.txt", out / "notes.txt", outside / ".x.abc.tmp"]
    for victim in victims:
        victim.write_text("keep me")
    (out / "sub").symlink_to(outside, target_is_directory=True)
    leftover = out / ".collection.parquet.abc.tmp"  # one a killed run of vehiclust could leave
    leftover.write_text("half")
    lines = ["../victim.txt", str(tmp_path / "victim.txt"), "notes.txt", "sub/.x.abc.tmp", leftover.name]
    (out / ".vehiclust" / "manifest.txt").write_text("".join(f"t {rel}\n" for rel in lines))
    with ownership.claimed(out):
        pass
    assert all(victim.read_text() == "keep me" for victim in victims) and not leftover.exists()


@pytest.mark.parametrize("plant", ["lock", "manifest", "state", "manifest_folder"])
def test_links_and_folders_in_the_record_s_place_are_refused_and_write_nothing_elsewhere(tmp_path, plant):
    out, victim = tmp_path / "run", tmp_path / "victim.txt"
    state = out / ".vehiclust"
    victim.write_text("keep me")
    if plant == "state":  # the record's folder itself a link
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        out.mkdir()
        state.symlink_to(elsewhere, target_is_directory=True)
    else:
        state.mkdir(parents=True)
        if plant == "manifest_folder":  # marks the folder, while nothing in it could be found ours
            (state / "manifest.txt").mkdir()
        else:
            (state / "manifest.txt").write_text("")
            (state / ("lock" if plant == "lock" else "manifest.txt")).unlink(missing_ok=True)
            (state / ("lock" if plant == "lock" else "manifest.txt")).symlink_to(victim)
    with pytest.raises(VehiclustError, match="not the record vehiclust keeps") as info:
        ownership.claim(out)
    assert "\n" not in str(info.value) and victim.read_text() == "keep me"
    if plant == "state":
        assert list(elsewhere.iterdir()) == []


def test_the_compacted_record_is_a_new_file_and_a_damaged_one_is_no_traceback(tmp_path):
    out, victim = tmp_path / "run", tmp_path / "victim.txt"
    (out / ".vehiclust").mkdir(parents=True)
    victim.write_text("keep me")
    (out / ".vehiclust" / "manifest.txt").write_bytes(b"w collection.parquet\n\xff\xfe not text\n")
    (out / ".vehiclust" / "manifest.tmp").symlink_to(victim)  # where an older compaction wrote
    with ownership.claimed(out):
        pass
    assert victim.read_text() == "keep me" and (out / ".vehiclust" / "manifest.txt").is_file()


def test_files_left_among_the_descriptor_parts_are_neither_trusted_nor_deleted(tmp_path, images):
    from vehiclust.pipeline import describe_folder, ingest_input

    out = tmp_path / "run"
    ingest_input(images, out)
    stale = out / "descriptors" / ".parts" / f"color_hist-{'a' * 16}"  # named as a stale parts folder
    stale.mkdir(parents=True)
    (stale / "thesis.txt").write_text("keep me")
    (stale / "part_000000.json").write_text('{"errors": {}}')  # and a part vehiclust did not write
    describe_folder(out, ["color_hist"])
    assert (stale / "thesis.txt").read_text() == "keep me" and (stale / "part_000000.json").exists()
    matrix = np.asarray(RunFolder(out).load_descriptor("color_hist"))
    assert matrix.shape[0] == len(RunFolder(out).load_collection()) and np.isfinite(matrix).all()


def test_stage_records_left_or_damaged_in_out_give_no_timings_and_no_traceback(tmp_path):
    out = tmp_path / "run"
    with ownership.claimed(out):
        run = RunFolder(out)
        run.record_stage("ingest", "k1", 1.5)
        run.record_stage("cluster", "k2", 2.5)
        (out / "stages" / "cluster.json").write_text("[1, 2]")  # damaged in place: still listed as ours
        (out / "stages" / "evil.json").write_text('{"seconds": "abc"}')  # never written by vehiclust
        (out / "stages" / "odd.json").write_bytes(b"\xff\xfe")
        assert run.stage_timings() == {"ingest": 1.5}


def test_a_collection_left_in_out_is_not_read_so_its_locations_lead_nowhere(tmp_path, images):
    from vehiclust.pipeline import describe_folder, ingest_input

    made = tmp_path / "made"
    ingest_input(images, made)
    secret = tmp_path / "private.jpg"  # an image of the user's, outside any input
    secret.write_bytes(next(images.rglob("*.jpg")).read_bytes())
    forged = pd.read_parquet(made / "collection.parquet").assign(location=str(secret))
    out = tmp_path / "bare"
    out.mkdir()
    forged.to_parquet(out / "collection.parquet")  # a folder vehiclust never made
    with pytest.raises(VehiclustError, match="not written by vehiclust") as info:
        describe_folder(out, ["color_hist"])  # it would decode every location
    assert "collection.parquet" in one_line(info) and not (out / "descriptors" / "color_hist.npy").exists()


def test_files_a_worker_process_wrote_are_ours_to_the_process_that_claimed_the_folder(tmp_path):
    out = tmp_path / "run"
    with ownership.claimed(out):
        part = out / "descriptors" / "part.npy"
        part.parent.mkdir()
        part.write_bytes(b"x")
        assert not ownership.is_ours(part)
        code = ("import sys; from vehiclust import ownership; ownership.written(sys.argv[1])")
        subprocess.run([sys.executable, "-c", code, str(part)], check=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        assert ownership.is_ours(part)  # the worker's line in the log, read since
        assert ownership.remove_owned(part.parent) == [] and not part.exists()


def test_runs_through_a_linked_out_in_one_process_keep_their_record(tmp_path, monkeypatch):
    real, link = tmp_path / "real", tmp_path / "link"
    real.mkdir()
    link.symlink_to(real, target_is_directory=True)
    for name in ("a.txt", "b.txt"):  # two runs in one process (a notebook), --out given through a link
        with ownership.claimed(link):
            write_text(link / name, name)
    assert oct((real / ".vehiclust" / "manifest.txt").stat().st_mode & 0o777) == "0o644"
    monkeypatch.setattr(ownership, "_roots", {})  # what the next process knows: nothing yet
    monkeypatch.setattr(ownership, "_manifests", {})
    assert ownership.is_ours(real / "a.txt") and ownership.is_ours(real / "b.txt")
    with ownership.claimed(real):
        write_text(real / "a.txt", "again")  # its own file: replaced, not refused


@pytest.mark.parametrize("name", ["../../outside", "..", "a/../../outside", "a\\b"])
def test_a_name_read_from_a_table_in_out_never_leads_out_of_the_run_folder(tmp_path, name):
    from vehiclust.runfolder import CLUSTERING

    out = tmp_path / "deep" / "run"
    (out / "clusterings" / "a").mkdir(parents=True)
    np.savez(tmp_path / "deep" / "outside.npz", labels=np.zeros(3))  # what clusterings/../../outside reaches
    with pytest.raises(VehiclustError, match="not a name vehiclust gives its files") as info:
        CLUSTERING.load(RunFolder(out), name)  # a descriptor name from a runs.csv edited in place
    assert "\n" not in str(info.value)


def test_read_only_out_is_one_line(tmp_path, images, monkeypatch):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    if os.geteuid() == 0:  # root writes anywhere: make the OS refuse as it would for a user
        real = Path.mkdir

        def refuse(self, *args, **kwargs):
            if out in self.parents:
                raise OSError(errno.EROFS, "Read-only file system", str(self))
            return real(self, *args, **kwargs)

        monkeypatch.setattr(Path, "mkdir", refuse)
    try:
        with pytest.raises(VehiclustError) as info:
            ingest(images, RunFolder(out / "run"))
        assert str(out / "run") in one_line(info) and "writable" in str(info.value)
    finally:
        out.chmod(0o755)


def test_faults_become_one_line_messages():
    full = fault_message(OSError(errno.ENOSPC, "No space left on device", "/runs/x/descriptors/a.npy"))
    assert "/runs/x/descriptors/a.npy" in str(full) and "no space left" in str(full)
    assert "read-only" in str(fault_message(OSError(errno.EROFS, "Read-only file system", "/ro/x")))
    try:
        from vehiclust.cluster import algorithms  # noqa: F401 - a frame inside a stage package

        exec(compile("raise MemoryError", algorithms.__file__, "exec"))
    except MemoryError as exc:
        assert "out of memory in the cluster stage" in str(fault_message(exc))
    assert fault_message(ValueError("a bug")) is None  # bugs keep their traceback


def test_cli_read_only_out_is_a_message_not_a_traceback(tmp_path, images):
    out = tmp_path / "ro"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    code = ("import errno, sys; from vehiclust import cli\n"
            "def fail(*a, **k): raise OSError(errno.EROFS, 'Read-only file system', sys.argv[-1])\n"
            "import vehiclust.collection.stage; vehiclust.collection.stage.ingest = fail\n"
            "sys.argv = ['vehiclust', *sys.argv[3:], 'ingest', sys.argv[1], '--out', sys.argv[2]]\n"
            "cli.app()\n")
    for flags in ([], ["--debug"]):
        done = subprocess.run([sys.executable, "-c", code, str(images), str(out), *flags], capture_output=True,
                              text=True, env=env, timeout=120)
        assert done.returncode == 1
        assert ("Traceback" in done.stderr) == bool(flags)  # --debug shows it
        if not flags:
            assert "read-only" in done.stderr and "choose a writable --out" in done.stderr


# -- 3b. the notebook kernel and third-party state ------------------------------------------

def test_notebook_kernel_does_not_import_from_the_run_folder(tmp_path):
    from vehiclust.report.notebook import execute_notebook

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    marker = tmp_path / "imported"
    (run_dir / "matplotlib.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import os, sys, matplotlib\nprint(matplotlib.__file__)\nprint(os.environ['VEHICLUST_RUN_DIR'])\n"
        "print(os.environ['IPYTHONDIR'])")])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        execute_notebook(notebook, run_dir)
    assert not [str(w.message) for w in caught if "TCP" in str(w.message)]  # Unix sockets, not localhost ports
    printed = notebook.cells[0].outputs[0]["text"].splitlines()
    assert not marker.exists() and "site-packages" in printed[0]
    assert printed[1] == str(run_dir.resolve())
    assert not printed[2].startswith(os.path.expanduser("~/.ipython"))


def _run_isolated(tmp_path, code, extra_path=()):
    env = {**os.environ, "HOME": str(tmp_path / "home"),
           "PYTHONPATH": os.pathsep.join([*map(str, extra_path), *sys.path]),
           "VEHICLUST_CACHE": str(tmp_path / "cache")}
    for name in ("XDG_CACHE_HOME", "MPLCONFIGDIR", "IPYTHONDIR", "JUPYTER_RUNTIME_DIR"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120, cwd=tmp_path,
                          capture_output=True, text=True).stdout


def test_third_party_state_goes_to_the_user_cache(tmp_path):
    _run_isolated(tmp_path, "from vehiclust.thirdparty import configure_process, import_onnxruntime\n"
                            "configure_process(); import_onnxruntime()\n"
                            "import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt\n"
                            "plt.figure(); plt.text(0, 0, 'x'); plt.savefig('/dev/null', format='png')\n")
    home = tmp_path / "home"
    assert not (home / ".cache" / "Microsoft").exists() and not (home / ".cache" / "matplotlib").exists()
    assert list((tmp_path / "cache" / "third_party" / "matplotlib").glob("fontlist*.json"))


def test_libraries_compile_their_numba_code_uncached_where_no_cache_folder_can_be_written(monkeypatch):
    import numba

    from vehiclust import jit_cache
    from vehiclust.jit_cache import _caching

    # numba finds no folder for the cache of a function whose source file is nowhere: what it
    # finds where site-packages, the home folder and the cache folder are all read-only
    space = {}
    exec(compile("def add_one(x):\n    return x + 1\n", "/nonexistent/umap_.py", "exec"), space)
    nowhere = space["add_one"]
    raw = getattr(numba.njit, "__wrapped__", numba.njit)  # numba's own, where configure_process patched it
    with pytest.raises(RuntimeError, match="no locator available"):
        raw(cache=True)(nowhere)
    njit = _caching(raw)
    monkeypatch.setattr(jit_cache, "_warned", False)
    with pytest.warns(RuntimeWarning, match="compiles again in every process") as said:
        assert njit(nowhere)(1) == 2  # @njit
        assert njit(fastmath=True)(nowhere)(2) == 3  # @njit(...): refused when it gets the function
        assert njit(cache=True)(nowhere)(3) == 4  # a library that asks for a cache itself (umap's rdist)
    assert len([w for w in said if "compiles again" in str(w.message)]) == 1  # once, not per function
    with pytest.raises(RuntimeError, match="not a locator problem"):  # any other refusal stands

        def refusing(*args, **options):
            raise RuntimeError("not a locator problem")
        _caching(refusing)(nowhere)

    def add_two(x):
        return x + 2

    assert type(njit(add_two)._cache).__name__ == "FunctionCache"  # cached where it can be
    assert type(njit(cache=False)(add_two)._cache).__name__ == "NullCache"  # the library's choice kept


def test_onnxruntime_is_imported_with_its_cache_in_vehiclust_s_folder(tmp_path):
    # Whether onnxruntime writes its device id at all depends on the build and the machine (CI's
    # did not), so a stand-in module records the cache folder it is imported under.
    fake = tmp_path / "fake"
    (fake / "onnxruntime").mkdir(parents=True)
    (fake / "onnxruntime" / "__init__.py").write_text(
        "import os\nSEEN = os.environ.get('XDG_CACHE_HOME')\ndef disable_telemetry_events():\n    pass\n")
    printed = _run_isolated(tmp_path, "import os\nfrom vehiclust.thirdparty import import_onnxruntime\n"
                                      "ort = import_onnxruntime()\n"
                                      "print(ort.SEEN); print(os.environ.get('XDG_CACHE_HOME'))\n",
                            extra_path=[fake]).splitlines()
    assert printed == [str(tmp_path / "cache" / "third_party" / "onnxruntime"), "None"]


# -- 4. changed input is noticed -------------------------------------------------------------

def test_replaced_image_in_a_bundle_is_reingested(tmp_path, photo_folder):
    rel = sorted(p.relative_to(photo_folder).as_posix() for p in photo_folder.rglob("*.jpg"))[:4]
    paths = [f"veriwild/1/{p}" for p in rel]
    bundle = write_case_bundle(tmp_path / "case", paths, {"osnet": np.ones((len(paths), 4))})
    for p in rel:
        target = bundle / "raw_data" / "veriwild" / "1" / p
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo_folder / p, target)
    run = RunFolder(tmp_path / "run")
    before = ingest(bundle, run)
    replaced = bundle / "raw_data" / "veriwild" / "1" / rel[0]
    replaced.write_bytes(jpeg_bytes(size=(33, 21)))
    after = ingest(bundle, run)
    assert after["width"].iloc[0] == 33 and after["content_hash"].iloc[0] != before["content_hash"].iloc[0]
    assert after["content_hash"].iloc[1:].tolist() == before["content_hash"].iloc[1:].tolist()


# -- 6. numbers stay numbers -----------------------------------------------------------------

@pytest.mark.parametrize("values, match", [
    (np.full((5, 3), 1e39), "beyond float32's range"),
    (np.full((5, 3), 1e-300), "would become zeros"),
    (np.ones((5, 3)) + 1j, "complex values"),
    (np.ones(5), "a 1-D array of 5 values"),
])
def test_values_float32_cannot_hold_are_refused(tmp_path, values, match):
    path = tmp_path / "odd.npy"
    np.save(path, values)
    with pytest.raises(InputError, match=match) as info:
        load_descriptor_file(path)
    assert str(path) in one_line(info)


def test_tiny_values_beside_normal_ones_are_fine(tmp_path):
    path = tmp_path / "mixed.npy"
    values = np.ones((5, 3))
    values[:, 0] = 1e-300  # lost against the row's other values either way
    np.save(path, values)
    assert load_descriptor_file(path).matrix.shape == (5, 3)


def test_duplicated_keys_are_refused(tmp_path, images):
    paths = sorted(p.relative_to(images).as_posix() for p in images.rglob("*.jpg"))
    frame = pd.DataFrame({"path": paths + [paths[0]], "x": np.arange(len(paths) + 1.0)})
    frame.to_csv(tmp_path / "dup.csv", index=False)
    run = RunFolder(tmp_path / "run")
    ingest(images, run, [tmp_path / "dup.csv"])
    (message,) = run.stage_record("ingest")["skipped_descriptor_files"]
    assert "more than one vector" in message and paths[0] in message and not run.descriptor_names()


def test_one_dimensional_descriptor_is_not_l2_normalised():
    from vehiclust.cluster.preprocess import L2Normalize

    column = np.array([[3.0], [-2.0], [0.5]], dtype=np.float32)
    np.testing.assert_array_equal(L2Normalize().fit(column).transform(column), column)


# -- 7. formats, pixel limits, escaping ------------------------------------------------------

@pytest.mark.skipif(".avif" not in IMAGE_SUFFIXES, reason="this Pillow has no AVIF plugin")
def test_avif_is_ingested(tmp_path, images):
    Image.new("RGB", (40, 30), (10, 200, 10)).save(images / "00001" / "green.avif")
    table = ingest(images, RunFolder(tmp_path / "run")).set_index("path")
    assert table.loc["00001/green.avif", "error"] == "" and table.loc["00001/green.avif", "format"] == "AVIF"


def test_format_is_read_from_the_content(tmp_path, images):
    buffer = io.BytesIO()
    Image.new("RGB", (20, 10)).save(buffer, format="PNG")
    (images / "00001" / "really_png.jpg").write_bytes(buffer.getvalue())
    table = ingest(images, RunFolder(tmp_path / "run")).set_index("path")
    assert table.loc["00001/really_png.jpg", "format"] == "PNG"


def test_max_pixels_raises_pillows_own_limit():
    big = Image.new("1", (20_000, 10_000))  # 200 MP, above twice Pillow's default limit
    buffer = io.BytesIO()
    big.save(buffer, format="PNG")
    data = buffer.getvalue()
    assert "raise it with --max-pixels" in _error_of(lambda: open_image(data))
    assert open_image(data, max_pixels=300_000_000).size == (20_000, 10_000)


def _error_of(fn) -> str:
    try:
        fn()
    except Exception as exc:  # noqa: BLE001
        return str(exc)
    return ""


def test_hostile_names_reach_the_map_data_escaped():
    from vehiclust.report.mapview import map_payload, script_json

    names = pd.Series(["<!--<script>alert(1)</script>.jpg", "ok.jpg"])
    coords = {2: np.array([[0.0, 0.0], [1.0, 1.0]]), 3: np.zeros((2, 3))}
    payload = map_payload({"d": coords}, {"type": pd.Series(["</script><b>x</b>", "van"])},
                          np.full(2, -1), names, "d")
    text = script_json(payload)
    assert "<" not in text and ">" not in text
    assert json.loads(text)["paths"][0] == names[0]


def test_hostile_file_name_in_report_html(tmp_path):
    from vehiclust.report.html import ReportData, render_report

    name = "<!--<script>alert(1)</script>.jpg"
    run = RunFolder(tmp_path)
    table = pd.DataFrame({"row": [0, 1], "path": [name, "b.jpg"], "location": ["", ""]})
    runs = pd.DataFrame({"descriptor": ["d", "d"], "preprocessing": ["none"] * 2, "algorithm": ["kmeans"] * 2,
                         "params": ["k=2"] * 2, "n_clusters": [2, 3], "silhouette": [0.5, 0.4],
                         "davies_bouldin": [1.0, 1.1], "stability": [0.9, 0.8], "score": [1.0, 0.9],
                         "selected": [True, False], "best_overall": [True, False], "reason": [name, ""]})
    verdicts = pd.DataFrame({"outlier_reasons": [name, ""], "is_outlier": [True, False],
                             "outlier_score": [0.9, 0.1], "error": ["", ""]})
    descriptions = pd.DataFrame({"cluster": [0], "size": [2], "share": [1.0], "name": [name], "description": [name]})
    from vehiclust.report.mapview import map_payload

    payload = map_payload({"d": {2: np.array([[0.0, 0.0], [1.0, 1.0]]), 3: np.zeros((2, 3))}},
                          {"cluster": pd.Series([name, "1"])}, np.full(2, -1), table["path"], "d")
    data = ReportData(descriptions, {0: {"typical": np.array([0])}}, {name: np.array([0])}, payload)
    html = render_report(run, table, runs, verdicts, data)
    assert "<script>alert(1)" not in html and "<!--<script>" not in html
    assert html.count("<script") == html.count("</script>")


def test_only_the_changed_image_is_read_again(tmp_path, images, monkeypatch):
    run = RunFolder(tmp_path / "run")
    before = ingest(images, run)
    changed = images / before["path"].iloc[2]
    changed.write_bytes(jpeg_bytes(size=(31, 17)))
    read = []
    ingest_module = sys.modules["vehiclust.collection.ingest"]  # the package re-exports the function under this name

    real = ingest_module.probe
    monkeypatch.setattr(ingest_module, "probe", lambda location, *a: read.append(location) or real(location, *a))
    after = ingest(images, run)
    assert read == [str(changed)]
    assert after["width"].iloc[2] == 31 and after.drop(index=2).equals(before.drop(index=2))


def test_only_the_changed_member_of_an_archive_is_read_again(tmp_path, photo_folder, monkeypatch):
    rel = sorted(p.relative_to(photo_folder).as_posix() for p in photo_folder.rglob("*.jpg"))[:5]
    bundle = write_case_bundle(tmp_path / "case", [f"veriwild/1/{p}" for p in rel], {"osnet": np.ones((5, 4))})
    (bundle / "row_data").mkdir()

    def write_zip(replace_first: bool) -> None:
        with zipfile.ZipFile(bundle / "row_data" / "veriwild.zip", "w") as zf:
            for i, p in enumerate(rel):
                data = jpeg_bytes(size=(29, 13)) if replace_first and i == 0 else (photo_folder / p).read_bytes()
                zf.writestr(f"veriwild/1/{p}", data)

    write_zip(False)
    run = RunFolder(tmp_path / "run")
    ingest(bundle, run)
    write_zip(True)
    read = []
    ingest_module = sys.modules["vehiclust.collection.ingest"]  # the package re-exports the function under this name

    real = ingest_module.probe
    monkeypatch.setattr(ingest_module, "probe", lambda location, *a: read.append(location) or real(location, *a))
    after = ingest(bundle, run)
    assert len(read) == 1 and read[0].endswith(rel[0]) and after["width"].iloc[0] == 29


def test_parquet_list_column_is_measured_by_its_values(tmp_path, monkeypatch):
    path = tmp_path / "lists.parquet"
    pd.DataFrame({"path": [f"{i}.jpg" for i in range(100)], "vector": [np.zeros(5000)] * 100}).to_parquet(path)
    monkeypatch.setattr(pd, "read_parquet", lambda *a, **k: pytest.fail("decoded before the check"))
    with pytest.raises(InputError, match="4,0[0-9,]+ bytes exceed"):
        load_descriptor_file(path, limits=DescriptorLimits(max_bytes=1 << 20))


def test_dollar_signs_in_names_are_not_parsed_as_tex():
    from vehiclust.report.figures import plot_map, plot_montage

    name = r"a$\frac$b.jpg"
    coords = np.array([[0.0, 0.0], [1.0, 1.0]])
    for figure in (plot_map(coords, [name, "x$^$y"], title=name), plot_montage([None], [name], title=name)):
        figure.savefig(io.BytesIO(), format="png")  # a TeX parse error would raise here


def test_interrupted_reingest_does_not_look_complete(tmp_path, images, monkeypatch):
    run = RunFolder(tmp_path / "run")
    ingest(images, run)
    (images / "00001" / "new.jpg").write_bytes(jpeg_bytes())
    ingest_module = sys.modules["vehiclust.collection.ingest"]

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ingest_module, "write_parquet", killed)
    with pytest.raises(KeyboardInterrupt):
        ingest(images, run)
    assert run.stage_record("ingest") is None  # the next run starts the stage again
    monkeypatch.undo()
    assert "00001/new.jpg" in ingest(images, run)["path"].tolist()


def test_oversized_bundle_table_is_refused(tmp_path):
    bundle = write_case_bundle(tmp_path / "case", [f"veriwild/1/00001/{i:06d}.jpg" for i in range(2000)],
                               {"osnet": np.ones((2000, 4))})
    with pytest.raises(InputError, match="--max-descriptor-bytes") as info:
        ingest(bundle, RunFolder(tmp_path / "run"), settings=IngestSettings(max_descriptor_bytes=10_000))
    assert "images_paths.csv" in one_line(info)


def test_pickle_referring_to_one_list_many_times_is_measured_before_conversion(tmp_path):
    row = [0.0] * 1000
    path = tmp_path / "laughs.pickle"
    path.write_bytes(pickle.dumps([row] * 5000))  # 5,000 references to one list: 40 MB as an array
    assert path.stat().st_size < 100_000
    with pytest.raises(InputError, match="40,000,000 bytes exceed"):
        load_descriptor_file(path, limits=DescriptorLimits(max_bytes=10 << 20))


def test_a_killed_run_is_named_by_the_next_one(tmp_path, images):
    out = tmp_path / "run"
    ingest(images, RunFolder(out))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; from vehiclust import ownership; "
         f"ownership.claim({str(out)!r}); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()

    class Messages:
        said: list[str] = []

        def message(self, text):
            self.said.append(text)

        def task(self, *args):
            from vehiclust.progress import NullReporter

            return NullReporter().task(*args)

    ingest(images, RunFolder(out), reporter=Messages())
    assert any(f"pid {holder.pid}" in m and "interrupted" in m for m in Messages.said)
    Messages.said.clear()
    ingest(images, RunFolder(out), reporter=Messages())  # a run that ended well is not named
    assert not any("interrupted" in m for m in Messages.said)


def test_a_linked_folder_in_out_does_not_carry_writes_out(tmp_path, images):
    out, elsewhere = tmp_path / "out", tmp_path / "photos"
    out.mkdir()
    elsewhere.mkdir()
    (out / "thumbs").symlink_to(elsewhere, target_is_directory=True)
    ingest(images, RunFolder(out), force=True)
    from vehiclust.report.thumbnails import ensure_thumbnails

    run = RunFolder(out)
    with pytest.raises(VehiclustError, match="link out of the run folder"):
        ensure_thumbnails(run, run.load_collection(), [0])
    assert list(elsewhere.iterdir()) == []


def test_a_folder_of_the_run_replaced_by_a_link_is_neither_read_nor_emptied(tmp_path, images, monkeypatch):
    from vehiclust import ownership
    from vehiclust.report.thumbnails import cached_uri, ensure_thumbnails, thumbnail_path

    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    ingest(images, RunFolder(out))
    run = RunFolder(out)
    ensure_thumbnails(run, run.load_collection(), [0])
    thumb = thumbnail_path(run, 0)
    assert ownership.is_ours(thumb)
    # between runs, the thumbnail's folder becomes a link to a folder with a file of that name
    thumb.parent.rename(elsewhere)
    (elsewhere / thumb.name).write_text("password=hunter2")
    thumb.parent.symlink_to(elsewhere, target_is_directory=True)
    monkeypatch.setattr(ownership, "_roots", {})  # what the next process knows: nothing yet
    monkeypatch.setattr(ownership, "_manifests", {})
    assert not ownership.is_ours(thumb) and not ownership.remove_file(thumb)
    assert (elsewhere / thumb.name).read_text() == "password=hunter2"
    import base64

    assert b"hunter2" not in base64.b64decode(cached_uri(RunFolder(out), 0, True).split(",", 1)[1])


def test_a_temporary_file_is_never_made_through_a_link_out_of_the_run_folder(tmp_path, images):
    from vehiclust.runfolder import temporary_path

    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    elsewhere.mkdir()
    ingest(images, RunFolder(out))
    (out / "descriptors").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(VehiclustError, match="link out of the run folder"):
        with temporary_path(out / "descriptors" / "spilled.npy"):
            pass
    assert list(elsewhere.iterdir()) == []


def test_a_run_folder_deleted_and_made_again_is_written_as_new(tmp_path, images):
    out = tmp_path / "run"
    ingest(images, RunFolder(out))
    write_text(out / "note.txt", "one")
    shutil.rmtree(out)
    out.mkdir()
    write_text(out / "note.txt", "two")  # not a run folder any more: written as before
    assert (out / "note.txt").read_text() == "two"


@pytest.mark.slow
def test_a_whole_run_writes_nothing_in_home_but_the_user_cache(tmp_path):
    vectors = tmp_path / "vectors"
    vectors.mkdir()
    rng = np.random.default_rng(0)
    np.save(vectors / "feat.npy", np.concatenate([rng.normal(size=(40, 4)), rng.normal(5, 1, size=(40, 4))]))
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("XDG_CACHE_HOME", "MPLCONFIGDIR", "IPYTHONDIR", "JUPYTER_RUNTIME_DIR", "VEHICLUST_CACHE")}
    env.update(HOME=str(home), PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, "-m", "vehiclust.cli", "run", str(vectors), "--out", str(tmp_path / "run"),
                           "--k", "2:3", "-a", "kmeans", "-p", "std+pca"], env=env, capture_output=True, text=True,
                          timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "notebook: executed" in done.stderr
    assert sorted(p.relative_to(home).as_posix() for p in home.iterdir()) == [".cache"]
    assert [p.name for p in (home / ".cache").iterdir()] == ["vehiclust"]


def test_a_link_left_in_thumbs_is_never_embedded(tmp_path, images):
    out = tmp_path / "out"
    (out / "thumbs" / "0").mkdir(parents=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("password=hunter2")
    (out / "thumbs" / "0" / "0.jpg").symlink_to(secret)
    ingest(images, RunFolder(out), force=True)
    from vehiclust.report.thumbnails import cached_uri, ensure_thumbnails

    run = RunFolder(out)
    with pytest.raises(VehiclustError, match="not written by vehiclust"):  # it will not replace it either
        ensure_thumbnails(run, run.load_collection(), [0])
    import base64

    embedded = base64.b64decode(cached_uri(run, 0, True).split(",", 1)[1])  # the placeholder
    assert b"hunter2" not in embedded


def test_a_link_left_in_place_of_a_map_sheet_is_neither_read_nor_replaced(tmp_path, images, monkeypatch):
    import builtins

    from vehiclust.report.tilesheets import ensure_map_tiles, map_tile, sheet_path

    out = tmp_path / "out"
    secret = tmp_path / "secret.txt"
    secret.write_text("password=hunter2")
    ingest(images, RunFolder(out))
    run = RunFolder(out)
    sheet_path(run, 0).parent.mkdir(parents=True)
    sheet_path(run, 0).symlink_to(secret)
    opened = []
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: opened.append(str(f)) or real_open(f, *a, **k))
    assert map_tile(run, 0) is None
    with pytest.raises(VehiclustError, match="not written by vehiclust"):
        ensure_map_tiles(run, run.load_collection(), [0])
    assert str(secret) not in opened and str(sheet_path(run, 0)) not in opened
    assert sheet_path(run, 0).is_symlink() and secret.read_text() == "password=hunter2"



def test_a_link_put_in_place_of_a_file_vehiclust_wrote_is_not_read(tmp_path, images, monkeypatch):
    """A stage record and an output of a run folder replaced by links to a file elsewhere: the
    stage runs again without opening the file the links lead to, and its own files replace the
    links (the file elsewhere stays as it was)."""
    import builtins

    out = tmp_path / "out"
    ingest(images, RunFolder(out))
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"fingerprint": "anything", "stage": "ingest"}))
    replaced = (out / "stages" / "ingest.json", out / "collection.parquet")
    for path in replaced:
        path.unlink()
        path.symlink_to(outside)
    opened, real_open = [], io.open

    def watched_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and Path(file).resolve() == outside.resolve():
            opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", watched_open)
    monkeypatch.setattr(io, "open", watched_open)
    ingest(images, RunFolder(out))
    monkeypatch.undo()
    assert opened == []
    assert not any(path.is_symlink() for path in replaced)
    assert RunFolder(out).stage_record("ingest")["stage"] == "ingest" and len(RunFolder(out).load_collection())
    assert json.loads(outside.read_text()) == {"fingerprint": "anything", "stage": "ingest"}


def test_every_reader_of_a_run_folder_refuses_a_link_in_place_of_its_file(tmp_path, images, monkeypatch):
    """The readers themselves: a command run on such a folder stops with one line naming the
    file (never reading where the link leads), and ingest's reuse of earlier probes skips it."""
    from vehiclust.collection.changes import reusable_probes
    from vehiclust.runfolder import RUNS, write_csv

    out = tmp_path / "out"
    ingest(images, RunFolder(out))
    run = RunFolder(out)
    run.save_descriptor("planted", np.zeros((3, 2), np.float32), {"name": "planted"})
    write_csv(RUNS.path(run), pd.DataFrame({c: [] for c in RUNS.columns}))
    outside = tmp_path / "outside.txt"
    outside.write_text("password=hunter2")
    for path in (run.collection_path, run.descriptor_path("planted"), run.descriptor_meta_path("planted"),
                 RUNS.path(run)):
        path.unlink()
        path.symlink_to(outside)
    for read in (run.load_collection, lambda: run.load_descriptor("planted"),
                 lambda: run.descriptor_meta("planted"), lambda: RUNS.load(run)):
        with pytest.raises(VehiclustError, match="a link, not the file vehiclust wrote"):
            read()
    parquet_reads = []
    monkeypatch.setattr(pd, "read_parquet", lambda path, *a, **k: parquet_reads.append(str(path)))
    assert reusable_probes(run, [], [], "key").empty and parquet_reads == []

def test_records_and_descriptors_left_in_out_are_not_trusted(tmp_path, images):
    out = tmp_path / "out"
    (out / "stages").mkdir(parents=True)
    (out / "descriptors").mkdir()
    (out / "stages" / "ingest.json").write_text(json.dumps({"fingerprint": "anything"}))
    np.save(out / "descriptors" / "planted.npy", np.zeros((3, 2)))
    (out / "descriptors" / "planted.json").write_text("{}")
    with pytest.raises(VehiclustError, match="ingest.json: exists and was not written by vehiclust"):
        ingest(images, RunFolder(out), force=True)  # ran (their record did not count), kept their file
    run = RunFolder(out)
    assert "planted" not in run.descriptor_names()
    assert run.stage_record("ingest") is None


def test_a_picture_this_pillow_cannot_open_is_a_row_not_skipped(tmp_path, images):
    (images / "00001" / "phone.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(64))
    (images / "00001" / "drawing.eps").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 1 1\n")
    table = ingest(images, RunFolder(tmp_path / "run")).set_index("path")
    assert table.loc["00001/drawing.eps", "error"] == "not a recognised image format"
    if ".heic" not in IMAGE_SUFFIXES:
        assert table.loc["00001/phone.heic", "error"] == "not a recognised image format"


def test_size_options_read_binary_units_and_refuse_nonsense():
    from vehiclust.errors import parse_size

    assert parse_size("256M") == 256 << 20 and parse_size("1.5GiB") == 3 << 29 and parse_size(4096) == 4096
    for bad in ("abc", "", "-1M"):
        with pytest.raises(VehiclustError, match="--max-image-bytes"):
            parse_size(bad, "--max-image-bytes")


def test_worker_processes_import_nothing_from_the_working_folder(tmp_path):
    """The sweep's and the maps' worker processes, and loky's resource tracker, start in the
    working folder, which may be the user's input or --out: a module lying there must not be
    imported (PYTHONSAFEPATH). A fresh process (``-P``: it does not import from there itself)
    starts a pool of its own there."""
    for name in ("joblib", "numpy", "vehiclust"):
        (tmp_path / f"{name}.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'a').write('{name}')\n")
    script = ("import os\nfrom vehiclust.executor.processes import start, worker_pool\n"
              "assert start(worker_pool(2), os.getpid)() != os.getpid()\n")
    done = subprocess.run([sys.executable, "-P", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "imported").exists()
