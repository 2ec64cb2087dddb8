"""Every numeric flag is checked when the arguments are parsed (``ncsn.cli.args``): an absurd
count, a value out of its bounds, NaN or infinity is one line and exit 2 before any work (no
model is read: the model argument here does not exist)."""

import pytest

from ncsn.cli import main

SAMPLE = ["sample", "no-such-model", "--out", "no-such-out"]
INPAINT = ["inpaint", "no-such-model", "--out", "no-such-out", "--images", "x.png"]


@pytest.mark.parametrize(("argv", "message"), [
    ([*SAMPLE, "--nfe", "1e12"], "argument --nfe: '1e12': must be <= 100000"),
    ([*SAMPLE, "--nfe", "1000000000000"], "argument --nfe: '1000000000000': must be <= 100000"),
    ([*SAMPLE, "--nfe", "2.5"], "argument --nfe: '2.5': input should be a valid integer"),
    ([*SAMPLE, "-n", "0"], "argument -n/--num-samples: '0': must be >= 1"),
    ([*SAMPLE, "-n", "1e9"], "argument -n/--num-samples: '1e9': must be <= 10000000"),
    ([*SAMPLE, "--batch-size", "-1"], "argument --batch-size: '-1': must be >= 1"),
    ([*SAMPLE, "--batch-size", "1e7"], "argument --batch-size: '1e7': must be <= 65536"),
    ([*SAMPLE, "--levels", "1000001"], "argument --levels: '1000001': must be <= 100000"),
    ([*SAMPLE, "--gif-frames", "0"], "argument --gif-frames: '0': must be >= 1"),
    ([*SAMPLE, "--gif-frames", "1e6"], "argument --gif-frames: '1e6': must be <= 10000"),
    ([*SAMPLE, "--scale", "1000"], "argument --scale: '1000': must be <= 64"),
    ([*SAMPLE, "--seed", "-1"], "argument --seed: '-1': must be >= 0"),
    ([*SAMPLE, "--seed", str(2**64)], "argument --seed"),
    ([*SAMPLE, "--eta", "nan"], "argument --eta: 'nan': input should be a finite number"),
    ([*SAMPLE, "--step-size", "nan"], "argument --step-size: 'nan': input should be a finite"),
    ([*SAMPLE, "--step-size", "inf"], "argument --step-size: 'inf': input should be a finite"),
    ([*SAMPLE, "--snr", ".inf"], "argument --snr: '.inf': input should be a finite number"),
    ([*SAMPLE, "--s-churn", "inf"], "argument --s-churn: 'inf': input should be a finite"),
    ([*SAMPLE, "--sigma-min", "inf"], "argument --sigma-min: 'inf': input should be a finite"),
    ([*SAMPLE, "--sigma-min", "0"], "argument --sigma-min: '0': must be >= 1e-08"),
    ([*SAMPLE, "--rho", "nan"], "argument --rho: 'nan': input should be a finite number"),
    ([*SAMPLE, "--rho", "0"], "argument --rho: '0': must be > 0"),
    ([*SAMPLE, "--guidance-scale", "nan"], "argument --guidance-scale: 'nan': input should be"),
    ([*INPAINT, "--fraction", "nan"], "argument --fraction: 'nan': input should be a finite"),
    ([*INPAINT, "--fraction", "2"], "argument --fraction: '2': must be <= 1"),
    ([*INPAINT, "-k", "0"], "argument -k/--completions: '0': must be >= 1"),
    ([*INPAINT, "--box", "100000"], "argument --box: '100000': must be <= 4096"),
    (["restore", "m", "--out", "o", "--images", "x", "--task", "denoise", "--noise-std", "-1"],
     "argument --noise-std: '-1': must be >= 0"),
    (["noise-levels", "--dim", "10", "--sigma-max", "1e300"],
     "argument --sigma-max: '1e300': must be <= 1000000.0"),
    (["noise-levels", "--dim", "10", "--sigma-max", "nan"], "argument --sigma-max: 'nan'"),
    (["noise-levels", "--dim", "0", "--sigma-max", "1"], "argument --dim: '0': must be >= 1"),
    (["noise-levels", "--dim", "10", "--num-levels", "1"], "argument --num-levels: '1': must be"),
    (["noise-levels", "--dim", "10", "--step-size", "nan"], "argument --step-size: 'nan'"),
    (["noise-levels", "--dim", "10", "--target", "inf"], "argument --target: 'inf'"),
    (["convert-official", "c.pth", "--out", "o", "--preset", "cifar10", "--ngf", "-4"],
     "argument --ngf: '-4': must be >= 1"),
    (["convert-official", "c.pth", "--out", "o", "--preset", "cifar10", "--ngf", "3000000"],
     "argument --ngf: '3000000': must be <= 4096"),
    (["convert-official", "c.pth", "--out", "o", "--preset", "cifar10", "--channels", "2"],
     "argument --channels: invalid choice: 2"),
    (["convert-official", "c.pth", "--out", "o", "--preset", "cifar10", "--sigma-max", "inf"],
     "argument --sigma-max: 'inf': input should be a finite number"),
    (["convert-official", "c.pth", "--out", "o", "--preset", "cifar10", "--num-levels", "1e9"],
     "argument --num-levels: '1e9': must be <= 100000"),
    (["likelihood", "m", "--images", "x", "--rtol", "nan"], "argument --rtol: 'nan'"),
    (["likelihood", "m", "--images", "x", "--prior-mean", "inf"], "argument --prior-mean"),
    (["evaluate", "s", "--num-samples", "1e12"], "argument --num-samples: '1e12': must be <="),
    (["demo", "--nfe", "1e12"], "argument --nfe: '1e12': must be <= 100000"),
    (["toy", "figure2", "--out", "x", "--steps", "1e12"], "argument --steps: '1e12': must be"),
])
def test_bad_numbers_are_one_line_errors_before_any_work(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_a_closed_stdout_ends_quietly_with_exit_141() -> None:
    """``ncsn noise-levels ... | head -c 10``: the reader leaves early; no BrokenPipeError
    traceback, exit 128 + SIGPIPE."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": "src", "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-m", "ncsn", "noise-levels", "--dim", "10",
                              "--sigma-max", "50", "--json"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    child.stdout.close()
    err = child.stderr.read().decode()
    assert child.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err
