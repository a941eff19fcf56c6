"""The run list's view of the methods (read from source) is the methods' own signatures."""

from __future__ import annotations

import inspect
import subprocess
import sys
import typing

from visprompt import methods
from visprompt.training.method_options import NOT_OPTIONS, declared_methods


def _signature_options(method: str) -> dict[str, typing.Any]:
    """What `inspect` says the constructor takes, with the same exclusions."""
    init = methods.method_class(method).__init__
    hints = typing.get_type_hints(init)
    return {
        p.name: hints.get(p.name, typing.Any)
        for p in inspect.signature(init).parameters.values()
        if p.name not in NOT_OPTIONS
        and p.kind is not p.VAR_KEYWORD
        and "Tensor" not in str(p.annotation)
    }


def test_source_read_options_equal_the_imported_signatures() -> None:
    declared = declared_methods()
    assert list(declared) == methods.available()
    for method, options in declared.items():
        assert options == _signature_options(method), method
        assert list(options) == list(_signature_options(method)), method  # same order


def test_reading_them_imports_no_torch() -> None:
    code = (
        "import sys; from visprompt.training.runs import validate_runs; "
        "from visprompt.training.method_options import declared_methods; declared_methods(); "
        "print(sorted(m for m in ('torch', 'timm', 'peft', 'mlflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
