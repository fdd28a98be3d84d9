"""The commands runs and sweeps print name the running interpreter and the right addresses."""
import shlex
import sys

from mmgnn.launch.commands import report_command, run_footer, run_link, ui_command


def test_a_local_store_gets_a_ui_started_by_this_interpreter():
    assert shlex.split(ui_command("sqlite:////tmp/a b/m.db")) == [
        sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", "sqlite:////tmp/a b/m.db", "--port", "5000"]
    assert ui_command("http://10.0.0.5:5000") == "open http://10.0.0.5:5000"


def test_links_point_at_the_server_or_the_local_ui():
    assert run_link("http://host:5000/", "3", "abc") == "http://host:5000/#/experiments/3/runs/abc"
    assert run_link("sqlite:///m.db", "3", "abc") == "http://127.0.0.1:5000/#/experiments/3/runs/abc"
    assert "sync" in run_link("http://host:5000", None, None)


def test_the_footer_names_folder_link_and_ui_and_the_report_command_this_interpreter():
    text = run_footer("/runs/r1", "sqlite:///m.db", "1", "xyz")
    assert "run folder: /runs/r1" in text and "/#/experiments/1/runs/xyz" in text
    assert f"{sys.executable} -m mlflow ui" in text
    assert run_footer("/runs/r1", None, None, None).strip() == "run folder: /runs/r1"
    assert shlex.split(report_command("p1", "sqlite:///m.db"))[:3] == [sys.executable, "-m", "experiments.report"]
