import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# The installed start-up hook (simlm_ir_startup.pth) imports ``simlm_ir`` before pytest starts, from
# wherever the environment's editable install points. Forget that copy, so the tests import the tree
# they live in (a git worktree, mutmut's mutants/ copy) instead of silently testing another one.
_loaded = sys.modules.get("simlm_ir")
if _loaded is not None and Path(_loaded.__file__).resolve().parent.parent != ROOT:
    for _name in [n for n in sys.modules if n == "simlm_ir" or n.startswith("simlm_ir.")]:
        del sys.modules[_name]


@pytest.fixture(scope="session", autouse=True)
def _isolated_irds_home(tmp_path_factory):
    """Tests never touch the user's ~/.ir_datasets: the embedded collection is placed afresh."""
    home = tmp_path_factory.mktemp("irds_home")
    old = os.environ.get("IR_DATASETS_HOME")
    os.environ["IR_DATASETS_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("IR_DATASETS_HOME", None)
    else:
        os.environ["IR_DATASETS_HOME"] = old
