"""The ``labelzoo`` command line as a user runs it (a real subprocess)."""

import socket
import subprocess
import sys

import pytest

import labelzoo


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labelzoo.cli", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def assert_one_clear_line(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("labelzoo: error:")]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0]


def test_help_lists_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("serve", "sample-data", "version"):
        assert command in result.stdout + result.stderr  # fire prints help on stderr


@pytest.mark.parametrize("command", ["serve", "sample-data"])
def test_command_help_has_an_example(command):
    result = run_cli(command, "--help")
    assert result.returncode == 0
    text = result.stdout + result.stderr
    assert f"labelzoo {command}" in text and "Example" in text


def test_version():
    result = run_cli("version")
    assert result.returncode == 0 and result.stdout.strip() == labelzoo.__version__


def test_sample_data_refuses_overwrite(tmp_path):
    assert run_cli("sample-data", str(tmp_path / "s"), "--n_images", "1", "--n_labeled", "1",
                   "--shape", "32,32,16").returncode == 0
    assert_one_clear_line(run_cli("sample-data", str(tmp_path / "s")), "not empty", "--overwrite")


def test_serve_missing_studies(tmp_path):
    assert_one_clear_line(run_cli("serve", "--studies", str(tmp_path / "nope")), "--studies", "no such folder")


def test_serve_studies_is_a_file(tmp_path):
    f = tmp_path / "image.nii.gz"
    f.write_bytes(b"x")
    assert_one_clear_line(run_cli("serve", "--studies", str(f)), "not a folder")


def test_serve_unknown_conf_key(tmp_path):
    assert_one_clear_line(run_cli("serve", "--studies", str(tmp_path), "--conf", "sam2=false"),
                          "unknown --conf key 'sam2'")


def test_serve_port_in_use(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = run_cli("serve", "--studies", str(tmp_path), "--port", str(port))
    assert_one_clear_line(result, f"port {port}", "in use")


def test_serve_dry_run_prints_the_url(tmp_path, free_port):
    result = run_cli("serve", "--studies", str(tmp_path), "--port", str(free_port), "--dry_run")
    assert result.returncode == 0, result.stderr
    assert f"http://127.0.0.1:{free_port}" in result.stdout


def test_serve_rejects_a_bad_typed_conf_value(tmp_path, capsys):
    from labelzoo.cli import main

    assert main(["serve", "--studies", str(tmp_path), "--conf", "tta_samples=99", "--dry_run"]) != 0
    assert "labelzoo: error: --conf tta_samples must be between 2 and 7" in capsys.readouterr().err


def test_sample_data_kinds(tmp_path):
    result = run_cli("sample-data", str(tmp_path / "x"), "--kind", "cxr", "--layout", "msd", "--n_images", "2",
                     "--n_labeled", "1")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "x" / "dataset.json").is_file()
    assert_one_clear_line(run_cli("sample-data", str(tmp_path / "y"), "--kind", "pet"), "--kind", "cxr")
