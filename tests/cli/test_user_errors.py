"""One clean error per user mistake, through the CLI entry point: a one-line `error: ...` naming
the file / key / value and what was expected, exit status 2; `--log-level DEBUG` adds the
traceback; a normal exit prints no traceback noise."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from mathjax_vl.cli.main import main
from mathjax_vl.data import records as R
from mathjax_vl.data.storage import write_dataset
from mathjax_vl.data.tokenization import TokenizerDirError, load_tokenizer

ROOT = Path(__file__).parents[2]
TINY = str(ROOT / "configs" / "tiny_text_sft.py")

PIPELINE_CONFIG = """
from mathjax_vl.train.config_loader import load_config


def get_config(arg=""):
    c = load_config({base!r})
    c.data.kind = "pipeline"
    c.data.dataset = {dataset!r}
    c.data.tokenizer_dir = {tokenizer!r}
    c.data.objective = "text_sft"
    c.train.global_batch_size = 4
    c.mesh.num_devices = 1
    return c
"""


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def text_dataset(tmp_path_factory):
    convs = [
        R.TextConversation((R.Turn("user", f"{i} + 1?"), R.Turn("assistant", f"{i + 1}")))
        for i in range(8)
    ]
    return write_dataset(convs, tmp_path_factory.mktemp("data"), "text")


def _pipeline_config(tmp_path, dataset, tokenizer) -> str:
    path = tmp_path / "pipeline_config.py"
    path.write_text(PIPELINE_CONFIG.format(base=TINY, dataset=dataset, tokenizer=tokenizer))
    return str(path)


def test_train_with_missing_tokenizer_dir(tmp_path, text_dataset, capsys):
    missing = tmp_path / "no_such_tokenizer"
    config = _pipeline_config(tmp_path, text_dataset, str(missing))
    argv = ["train", "--config", config, "--workdir", str(tmp_path / "w"), "--log-level", "ERROR"]
    assert main(argv) == 2
    err = _one_line_error(capsys)
    assert f"tokenizer directory {missing} does not exist" in err
    assert "expected a local directory with tokenizer.json (and tokenizer_config.json)" in err
    assert "Repo id" not in err
    # --log-level DEBUG: the same message, after the traceback
    assert main([*argv[:-1], "DEBUG"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "TokenizerDirError" in err
    assert err.rstrip().splitlines()[-1].startswith(f"error: tokenizer directory {missing}")


def test_tokenizer_dir_without_tokenizer_json_says_what_is_expected(tmp_path, text_dataset, capsys):
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "vocab.json").write_text("{}")
    (tok / "merges.txt").write_text("")
    with pytest.raises(TokenizerDirError, match=r"has no tokenizer\.json \(found \['merges"):
        load_tokenizer(str(tok))
    config = _pipeline_config(tmp_path, text_dataset, str(tok))
    assert main(["train", "--config", config, "--workdir", str(tmp_path / "w")]) == 2
    err = _one_line_error(capsys)
    assert f"tokenizer directory {tok} has no tokenizer.json" in err
    assert "sentencepiece" not in err and "tiktoken" not in err


def test_train_asking_for_more_devices_than_exist(tmp_path, capsys):
    n = len(jax.devices())
    argv = ["train", "--config", TINY, "--workdir", str(tmp_path / "w")]
    assert main([*argv, f"--config.mesh.num_devices={n + 1}"]) == 2
    err = _one_line_error(capsys)
    assert f"mesh.num_devices={n + 1} but only {n} cpu device(s) are available" in err
    assert not (tmp_path / "w").exists()  # refused before the run dir was touched
    assert main([*argv, "--config.mesh.shape={'data': 3, 'fsdp': 1, 'tensor': 1}"]) == 2
    assert "mesh.shape={'data': 3, 'fsdp': 1, 'tensor': 1}" in _one_line_error(capsys)


def test_train_with_unknown_override_or_config_file(tmp_path, capsys):
    argv = ["train", "--config", TINY, "--workdir", str(tmp_path / "w")]
    assert main([*argv, "--config.train.nope=1"]) == 2
    assert "no field 'train.nope' in config" in _one_line_error(capsys)
    assert main(["train", "--config", str(tmp_path / "x.py"), "--workdir", str(tmp_path)]) == 2
    assert f"config file {tmp_path / 'x.py'} does not exist" in _one_line_error(capsys)


@pytest.mark.parametrize(
    "content, needle",
    [
        ("{not json", "not a valid JSON config"),
        ("[1, 2]", "expected a JSON object (an HF config), found list"),
        ('{"architectures": ["LlavaForConditionalGeneration"], "text_config": 5}', "not a usable"),
        (
            '{"architectures": ["LlavaForConditionalGeneration"]}',
            "text_config.model_type None unsupported",
        ),
        ('{"model_type": "qwen2"}', "unsupported architecture None (model_type 'qwen2')"),
    ],
)
def test_eval_model_with_bad_config_json_names_the_file(tmp_path, capsys, content, needle):
    problem = R.EvalProblem("1", "text_dominant", "What is 2 + 2?", "4", "integer", ())
    data = write_dataset([problem], tmp_path / "data", "eval_set", split="test")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(content)
    rc = main(["eval", "--benchmark", "generic", "--data", data, "--model", str(model),
               "--out", str(tmp_path / "out")])  # fmt: skip
    err = _one_line_error(capsys)
    assert rc == 2 and f"{model / 'config.json'}: {needle}" in err


@pytest.mark.slow  # a subprocess (~20 s idle):
# pytest -q -p no:xdist -m slow tests/cli/test_user_errors.py -k noise
def test_normal_exit_has_no_traceback_noise(tmp_path):
    """A finished run started from a previous stage's checkpoint (init.checkpoint reads an orbax
    item dir) exits 0 with nothing on stderr at WARNING: no 'Event loop is closed' tracebacks,
    no orbax 'Metadata file does not exist' warning."""
    from mathjax_vl.train.config_loader import load_config
    from mathjax_vl.train.trainer import Trainer

    overrides = ["train.num_steps=2", "checkpoint.interval=2", "mesh.num_devices=1"]
    Trainer(load_config(TINY, overrides), tmp_path / "stage1").run()
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
    proc = subprocess.run(
        [sys.executable, "-m", "mathjax_vl.cli.main", "train", "--config", TINY,
         "--workdir", str(tmp_path / "stage2"), "--log-level", "WARNING",
         *(f"--config.{o}" for o in overrides),
         f"--config.init.checkpoint={tmp_path / 'stage1' / 'checkpoints'}"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "completed at step 2" in proc.stdout
    for noise in ("Traceback", "Event loop is closed", "Metadata file does not exist"):
        assert noise not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip() == "", proc.stderr[-3000:]
