"""Runs that never lie: interrupts, failed starts, provenance, checkpoints, one-line errors, overwrites.

Each test drives the bundle workflows as ``python -m monai.bundle run`` does (``ConfigWorkflow``),
on tiny priors and images; one test runs the real command line for the exit status and the
printed line. The numbers refer to the items of the reliability issue.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from helpers import error_line, tiny_unet
from helpers import CONFIGS, REPO, SIZE, make_pngs, make_prior, rows, run, workflow

FAST = {"num_outer": 1, "num_inner": 2}


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def run_logged(config, tmp_path, **overrides) -> list[str]:
    """``run`` with the package's log messages collected (the bundle's logging.conf replaces pytest's capture)."""
    wf = workflow(config, tmp_path, **overrides)
    records, root = _Records(), logging.getLogger("monai_dmilo")
    root.addHandler(records)
    level = root.level
    root.setLevel(logging.INFO)
    try:
        wf.initialize()
        wf.run()
        wf.finalize()
    finally:
        root.removeHandler(records)
        root.setLevel(level)
    return records.messages


# ----------------------------------------------------------------------------------------- 1. Ctrl-C


def _count_steps(monkeypatch) -> list[int]:
    from monai_dmilo.priors.stepwise import StepwiseDDIM

    calls = [0]
    original = StepwiseDDIM.step

    def counting(self, *args, **kwargs):
        calls[0] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StepwiseDDIM, "step", counting)
    return calls


def test_ctrl_c_records_nothing_for_the_unfinished_image_and_the_rerun_redoes_it(tmp_path, monkeypatch):
    from monai_dmilo.priors.stepwise import StepwiseDDIM

    data = tmp_path / "data"
    make_pngs(data, 3)
    common = dict(dataset_dir=str(data), batch_size=1)
    reference = tmp_path / "reference"
    calls = _count_steps(monkeypatch)
    run("evaluate.yaml", tmp_path, output_dir=str(reference), max_images=1, **common)
    per_image = calls[0]
    monkeypatch.undo()

    # Ctrl-C in the middle of the second image's solve (the solver catches it and returns early)
    original, seen = StepwiseDDIM.step, [0]

    def interrupting(self, *args, **kwargs):
        seen[0] += 1
        if seen[0] == per_image + per_image // 2 + 1:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StepwiseDDIM, "step", interrupting)
    out = tmp_path / "run"
    wf = workflow("evaluate.yaml", tmp_path, output_dir=str(out), **common)
    wf.initialize()
    with pytest.raises(SystemExit) as err:
        wf.run()
    assert err.value.code == 130                                 # non-zero exit status
    assert [r["name"] for r in rows(out / "metrics.csv")] == ["img0"]
    assert sorted(p.name for p in (out / "reconstructions").iterdir()) == ["img0.png"]
    assert not (out / "summary.json").exists()
    monkeypatch.undo()

    run("evaluate.yaml", tmp_path, output_dir=str(out), **common)     # the rerun redoes img1 and img2
    table = {r["name"]: r for r in rows(out / "metrics.csv")}
    assert sorted(table) == ["img0", "img1", "img2"]
    assert int(table["img1"]["nfe"]) == int(table["img0"]["nfe"])     # a whole solve, not a truncated one


def test_atomic_writes_leave_the_old_file_when_interrupted(tmp_path):
    from monai_dmilo.workflow.run_files import atomic_path, run_files, save_run_file

    target = tmp_path / "reconstructions" / "a.png"
    save_run_file(tmp_path, target, lambda tmp: tmp.write_bytes(b"old"))

    def half_then_ctrl_c(tmp: Path) -> None:
        tmp.write_bytes(b"ne")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        save_run_file(tmp_path, target, half_then_ctrl_c)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.png"]   # no temporary file left
    assert run_files(tmp_path) == [target.resolve()]
    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "metrics.csv") as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert not (tmp_path / "metrics.csv").exists()


def test_ctrl_c_on_the_command_line_exits_non_zero(tmp_path):
    """The real CLI: SIGINT during a solve -> exit status 130, no row for the unfinished image."""
    cfg = make_prior(tmp_path)
    data = tmp_path / "data"
    make_pngs(data, 2)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str([str(CONFIGS / "common.yaml"), str(CONFIGS / "evaluate.yaml")]),
           "--model_config", str(cfg), "--dataset_dir", str(data), "--output_dir", str(out), "--device", "cpu",
           "--num_steps", "2", "--batch_size", "1", "--solver_overrides", "{num_outer: 1, num_inner: 3000}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # A shell that starts pytest in the background (nohup, `&`, some CI runners) leaves SIGINT ignored, and
    # children inherit that; give the CLI the default disposition a terminal user's process has.
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not (out / "run_settings.json").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(2.0)                                   # inside the first (long) solve
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output[-2000:]
    assert "interrupted" in output
    assert not (out / "metrics.csv").exists() or rows(out / "metrics.csv") == []


# -------------------------------------------------------------------------------- 2. provenance


def test_inference_uses_the_recorded_task_and_refuses_a_mismatch(tmp_path):
    data = tmp_path / "data"
    make_pngs(data, 1)
    out = tmp_path / "mri"
    run("evaluate.yaml", tmp_path, dataset_dir=str(data), output_dir=str(out), task="mri")
    datalist = out / "measurements" / "datalist.json"
    record = json.loads(datalist.read_text())["provenance"]
    assert record["task"]["operator"] == "mri" and record["task"]["param_keys"] == ["mask"]
    assert record["prior"]["sha256"] and record["image_shape"] == [1, SIZE, SIZE]

    # no --task, no --model_config: both come from the record
    inf = tmp_path / "inf"
    run("inference.yaml", tmp_path, datalist_file=str(datalist), output_dir=str(inf), model_config=None)
    settings = json.loads((inf / "run_settings.json").read_text())
    assert settings["task"] == "mri" and Path(settings["model_config"]) == (tmp_path / "tiny.yaml").resolve()
    assert rows(inf / "metrics.csv")[0]["name"] == "img0"

    # an explicit task with another operator: one line, nothing written
    line = error_line(run, "inference.yaml", tmp_path, datalist_file=str(datalist),
                      output_dir=str(tmp_path / "wrong"), task="inpainting")
    assert "'inpainting' operator but the measurements were made for task 'mri'" in line
    assert not (tmp_path / "wrong").exists()

    # without provenance (a user's own datalist): complex k-space given to a real operator is refused
    plain = json.loads(datalist.read_text())
    plain.pop("provenance")
    (out / "measurements" / "plain.json").write_text(json.dumps(plain))
    line = error_line(run, "inference.yaml", tmp_path, datalist_file=str(out / "measurements" / "plain.json"),
                      output_dir=str(tmp_path / "plain"), task="inpainting")
    assert "is complex, but the 'inpainting' task's 'inpainting' operator gives real measurements" in line
    assert not (tmp_path / "plain").exists()
    line = error_line(run, "inference.yaml", tmp_path, datalist_file=str(out / "measurements" / "plain.json"),
                      output_dir=str(tmp_path / "plain"))
    assert "records no task" in line and "--task" in line


# ------------------------------------------------------------------------------- 3. checkpoints


def test_evaluate_takes_a_prior_the_user_trained(tmp_path):
    data = tmp_path / "data"
    make_pngs(data, 1)
    make_prior(tmp_path)
    mine = tmp_path / "my_prior.pt"
    torch.save(tiny_unet(1, seed=7).state_dict(), mine)          # other weights than the preset's
    log = run_logged("evaluate.yaml", tmp_path, dataset_dir=str(data), output_dir=str(tmp_path / "a"),
                     checkpoint=str(mine))
    assert any("unverified" in m and str(mine) in m for m in log)
    assert len(rows(tmp_path / "a" / "metrics.csv")) == 1
    line = error_line(run, "evaluate.yaml", tmp_path, dataset_dir=str(data), output_dir=str(tmp_path / "b"),
                      checkpoint=str(mine), checkpoint_sha256="0" * 64)
    assert "does not match the expected sha256" in line and "corrupt" not in line


# ---------------------------------------------------- 4 and 5. failed starts and one-line errors


def _nifti(path: Path, nan: bool = False) -> None:
    data = np.random.default_rng(0).normal(size=(SIZE, SIZE)).astype(np.float32)
    if nan:
        data[3, 4] = np.nan
    nib.Nifti1Image(data, np.eye(4)).to_filename(str(path))


@pytest.mark.parametrize(
    "case, match",
    [
        ("override_key", r"solver_overrides \['num_iner'\] do not apply to solver 'dmilo'.*'num_inner'"),
        ("negative_lr", "lr_z must be a number >= 0, got -0.1"),
        ("dmplug_default", None),                 # the README's `--solver dmplug` works as documented
        ("nan_nifti", r"image .*bad.nii.gz holds NaN or infinite values"),
        ("text_png", r"notes.png could not be read as an image: UnidentifiedImageError"),
        ("unknown_solver", r"solver name must be one of \['daps', .*got 'dmilo2'"),
        ("overrides_string", r"solver_overrides must be a mapping, e.g. .*\(with braces\); got the string 'num_inner: 3'"),
        ("cuda", "no CUDA device"),
        ("big_kernel", "the blur kernel is 64x64 but the x image is 16x16"),
    ],
)
def test_evaluate_checks_everything_before_writing_anything(tmp_path, case, match):
    data = tmp_path / "data"
    make_pngs(data, 2)
    overrides = {"dataset_dir": str(data), "output_dir": str(tmp_path / "run")}
    if case == "override_key":
        overrides["solver_overrides"] = {"num_iner": 3}
    elif case == "negative_lr":
        overrides["solver_overrides"] = {**FAST, "lr_z": -0.1}
    elif case == "dmplug_default":
        overrides.update(solver="dmplug", solver_overrides=None, max_images=1)
    elif case == "nan_nifti":
        for p in data.iterdir():
            p.unlink()
        _nifti(data / "good.nii.gz")
        _nifti(data / "bad.nii.gz", nan=True)
    elif case == "text_png":
        (data / "notes.png").write_text("not an image")
    elif case == "unknown_solver":
        overrides["solver"] = "dmilo2"
    elif case == "overrides_string":
        overrides["solver_overrides"] = "num_inner: 3"
    elif case == "cuda":
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
        overrides["device"] = "cuda"
    elif case == "big_kernel":
        overrides["task"] = "gaussian_blur_256"
    if case == "dmplug_default":
        from monai_dmilo.solvers import DMPlug

        with pytest.MonkeyPatch.context() as mp:          # the preset's 5,000 iterations, shortened here
            mp.setattr(DMPlug, "solve", _short_dmplug_solve(DMPlug.solve))
            run("evaluate.yaml", tmp_path, **overrides)
        assert len(rows(tmp_path / "run" / "metrics.csv")) == 1
        return
    line = error_line(run, "evaluate.yaml", tmp_path, **overrides)
    assert line.startswith("monai_dmilo error: ") and "\n" not in line
    import re

    assert re.search(match, line), line
    assert not (tmp_path / "run").exists()                        # nothing written: the rerun is not refused
    if case == "override_key":
        run("evaluate.yaml", tmp_path, **{**overrides, "solver_overrides": FAST})
        assert len(rows(tmp_path / "run" / "metrics.csv")) == 2


def _short_dmplug_solve(solve):
    def short(self, *args, **kwargs):
        self.num_iters = 2
        return solve(self, *args, **kwargs)

    return short


@pytest.mark.parametrize("case", ["missing_mask", "nan_measurement"])
def test_inference_checks_every_item_before_writing(tmp_path, case):
    np.save(tmp_path / "y.npy", np.zeros((1, SIZE, SIZE), np.float32))
    bad = np.zeros((1, SIZE, SIZE), np.float32)
    bad[0, 1, 1] = np.inf
    np.save(tmp_path / "y_bad.npy", bad)
    np.save(tmp_path / "mask.npy", np.ones((1, SIZE, SIZE), np.float32))
    items = [{"name": "a", "y": "y.npy", "mask": "mask.npy"}]
    items.append({"name": "b", "y": "y.npy"} if case == "missing_mask" else {"name": "b", "y": "y_bad.npy", "mask": "mask.npy"})
    (tmp_path / "list.json").write_text(json.dumps({"data": items}))
    line = error_line(run, "inference.yaml", tmp_path, datalist_file=str(tmp_path / "list.json"),
                      output_dir=str(tmp_path / "run"), task="inpainting")
    if case == "missing_mask":
        assert "datalist item 'b' has no ['mask'] entry" in line
    else:
        assert "y of" in line and "y_bad.npy holds NaN or infinite values" in line
    assert not (tmp_path / "run").exists()


def test_training_on_an_empty_folder_and_a_non_weights_only_checkpoint_give_one_line(tmp_path):
    from monai.bundle import ConfigWorkflow

    (tmp_path / "empty").mkdir()
    wf = ConfigWorkflow(config_file=str(CONFIGS / "train.yaml"), workflow_type="train",
                        dataset_dir=str(tmp_path / "empty"), output_dir=str(tmp_path / "out"), device="cpu")
    wf.initialize()
    assert "holds no image files" in error_line(wf.run)
    assert not (tmp_path / "out").exists()

    from monai_dmilo.priors.checkpoints import load_state_dict

    pickled = tmp_path / "pickled.pt"
    torch.save({"state_dict": tiny_unet(1).state_dict(), "optimizer_class": torch.optim.Adam}, pickled)
    line = error_line(load_state_dict, pickled)
    assert "weights-only" in line and "weights_only=False" not in line
    (tmp_path / "text.pt").write_text("hello")
    assert "is not a PyTorch checkpoint" in error_line(load_state_dict, tmp_path / "text.pt")


def test_one_line_on_the_command_line(tmp_path):
    """The hook the workflows install: the CLI prints one line (no traceback) and exits non-zero."""
    cfg = make_prior(tmp_path)
    make_pngs(tmp_path / "data", 1)
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str([str(CONFIGS / "common.yaml"), str(CONFIGS / "evaluate.yaml")]),
           "--model_config", str(cfg), "--dataset_dir", str(tmp_path / "data"), "--output_dir",
           str(tmp_path / "run"), "--device", "cpu", "--solver", "dmilo2"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower() or "Traceback" in line]
    assert len(errors) == 1 and errors[0].startswith("monai_dmilo error: solver name must be one of ['daps'") and "got 'dmilo2'" in errors[0], proc.stderr
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------ 6-9. overwrites, silent changes


def test_overwrite_deletes_only_what_the_run_wrote(tmp_path):
    data = tmp_path / "data"
    make_pngs(data, 2)
    out = tmp_path / "run"
    run("evaluate.yaml", tmp_path, dataset_dir=str(data), output_dir=str(out))
    mine = out / "reconstructions" / "my_notes.txt"
    mine.write_text("keep me")
    run("evaluate.yaml", tmp_path, dataset_dir=str(data), output_dir=str(out), overwrite=True, max_images=1, seed=3)
    assert mine.read_text() == "keep me"
    assert sorted(p.name for p in (out / "reconstructions").iterdir()) == ["img0.png", "my_notes.txt"]
    assert [r["name"] for r in rows(out / "metrics.csv")] == ["img0"]


def test_rgb_images_for_a_grey_prior_are_logged_once(tmp_path):
    from PIL import Image

    data = tmp_path / "data"
    data.mkdir()
    for k in range(2):
        Image.fromarray(np.full((SIZE, SIZE, 3), 40 * k + 10, np.uint8)).save(data / f"rgb{k}.png")
    log = run_logged("evaluate.yaml", tmp_path, dataset_dir=str(data), output_dir=str(tmp_path / "run"))
    assert sum("is a RGB image but the prior takes 1 channel" in m for m in log) == 1


def test_bfloat16_autocast_on_cpu_warns_once(caplog, tiny_generator):
    gen = tiny_generator()
    gen.autocast_dtype = torch.bfloat16
    z = torch.randn(1, 1, 16, 16)
    with caplog.at_level(logging.WARNING):
        gen.eps(z, 0)
        gen.eps(z, 1)
    assert sum("slower than float32" in r.getMessage() for r in caplog.records) == 1


# ------------------------------------------------------------------------------ 10. CT convention


def _gaussian(size: int, centre: tuple[float, float], sigma: float) -> torch.Tensor:
    rr, cc = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                            indexing="ij")
    return torch.exp(-((rr - centre[0]) ** 2 + (cc - centre[1]) ** 2) / (2 * sigma**2))[None, None]


@pytest.mark.parametrize("convention", ["centred", "skimage"])
@pytest.mark.parametrize("size", [64, 33])
def test_ct_conventions_against_the_analytic_radon_transform(convention, size):
    """A Gaussian blob's line integrals are a Gaussian in the detector coordinate: an independent
    reference for the angle direction, the rotation centre and the detector offsets."""
    from monai_dmilo.operators import CT

    sigma, blob = 2.5, (size * 0.3, size * 0.6)                    # (row, col), off centre
    angles = torch.tensor([0.0, 30.0, 90.0, 135.0], dtype=torch.float64)
    op = CT(angles, convention=convention)
    sino = op(_gaussian(size, blob, sigma))[0, 0]
    num_det = op.detectors(size, size)
    assert num_det == (92 if (convention, size) == ("centred", 64) else 91 if size == 64 else 47)
    theta = torch.deg2rad(angles)[:, None]
    if convention == "skimage":        # scikit-image radon(circle=False): centre W // 2, angle the other way
        c, s = size // 2, torch.arange(num_det, dtype=torch.float64) - num_det // 2
        s0 = (blob[1] - c) * torch.cos(theta) - (blob[0] - c) * torch.sin(theta)
    else:
        c, s = (size - 1) / 2, torch.arange(num_det, dtype=torch.float64) - (num_det - 1) / 2
        s0 = (blob[1] - c) * torch.cos(theta) + (blob[0] - c) * torch.sin(theta)
    expected = (2 * torch.pi) ** 0.5 * sigma * torch.exp(-((s - s0) ** 2) / (2 * sigma**2))
    torch.testing.assert_close(sino, expected, atol=0.02 * expected.max(), rtol=0)


# ------------------------------------------------------------------------------------------- also


def test_example_takes_help_and_flags(tmp_path):
    script = REPO / "examples" / "solve_one_image.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    helped = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path, env=env)
    assert helped.returncode == 0 and "--num_inner" in helped.stdout and " dB, " not in helped.stdout
    ran = subprocess.run([sys.executable, str(script), "--num_outer", "1", "--num_inner", "2"], capture_output=True,
                         text=True, timeout=300, cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert "PSNR" in ran.stdout and "network evaluations" in ran.stdout


def test_readme_python_snippet_runs_from_any_directory(tmp_path, monkeypatch):
    text = (REPO / "README.md").read_text()
    section = text[text.index("## In Python"):]
    code = section[section.index("```python") + len("```python"):]
    code = code[: code.index("```")]
    assert "num_inner=100" in code
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code.replace("num_inner=100", "num_outer=1, num_inner=2"), "README", "exec"), namespace)
    out = namespace["out"]
    assert out.x.shape == (1, 1, 32, 32) and out.nfe > 0


def test_metadata_verifies_offline_with_the_documented_command():
    from monai.bundle import verify_metadata

    verify_metadata(meta_file=str(CONFIGS / "metadata.json"), filepath=str(REPO / "schemas" / "metadata_schema.json"))
    docs = (REPO / "bundle" / "docs" / "README.md").read_text()
    assert "verify_metadata --meta_file bundle/configs/metadata.json --filepath schemas/metadata_schema.json" in docs


@pytest.mark.parametrize("size", [64, 33])
def test_ct_skimage_convention_equals_scikit_image_radon(size):
    """Where scikit-image is installed (not a dependency): equal to its radon(circle=False)."""
    skimage_radon = pytest.importorskip("skimage.transform").radon
    from monai_dmilo.operators import CT

    rr, cc = np.mgrid[:size, :size]
    image = np.exp(-((rr - size * 0.3) ** 2 + (cc - size * 0.6) ** 2) / 18.0) * (1 + 0.3 * np.sin(cc / 4.0))
    theta = np.array([0.0, 17.0, 45.0, 90.0, 133.0, 170.0])
    ours = CT(torch.tensor(theta), convention="skimage")(torch.from_numpy(image)[None, None])[0, 0].numpy().T
    np.testing.assert_allclose(ours, skimage_radon(image, theta=theta, circle=False), atol=1e-10)


def test_preflight_names_slice_zero_of_a_volume():
    from monai_dmilo.workflow.preflight import _describe

    assert _describe({"image": "v.nii.gz", "slice": 0}) == "v.nii.gz (slice 0)"
    assert _describe({"image": "a.png", "slice": -1}) == "a.png"


def test_ctrl_c_outside_a_solve_exits_130_with_one_line():
    """An uncaught KeyboardInterrupt (e.g. while the workflow loads its inputs) under the installed
    hook: one line on stderr, exit status 130, no traceback."""
    code = ("from monai_dmilo.workflow.errors import install_one_line_errors; install_one_line_errors(); "
            "raise KeyboardInterrupt")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          env={k: v for k, v in os.environ.items() if k != "MONAI_DMILO_TRACEBACK"})
    assert proc.returncode == 130
    assert proc.stderr.strip() == "monai_dmilo: interrupted; run the same command again to continue."


def test_command_line_booleans_are_read_as_booleans(tmp_path):
    """``--overwrite false`` reaches the workflow as the string "false": it must not overwrite."""
    from monai_dmilo.handlers import check_output_dir, pending_items
    from monai_dmilo.solvers import build
    from monai_dmilo.checks import as_bool

    assert [as_bool("x", v) for v in (True, "true", "Yes", "1", 1, False, "false", "OFF", "0", 0)] == [True] * 5 + [False] * 5
    for bad in ("maybe", 2, None, 0.5):
        with pytest.raises(ValueError, match="x must be true or false"):
            as_bool("x", bad)
    out = tmp_path / "run"
    out.mkdir()
    (out / "someone_elses_file.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty"):
        check_output_dir(out, settings={"a": 1}, overwrite="false")
    (out / "metrics.csv").write_text("name,psnr\na,20\n")
    assert [i["name"] for i in pending_items([{"name": "a"}, {"name": "b"}], out, overwrite="false")] == ["b"]
    assert build("dmilo", progress="false").progress is False
