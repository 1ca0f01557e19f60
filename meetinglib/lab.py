"""The notebooks for JupyterLab, for a user of the installed package.

The repository's ``make lab`` opens ``notebooks/`` with the project's kernel. Installed
from the wheel, the notebooks live inside the package and no kernel named after it
exists: ``meeting notebooks --dir FOLDER`` copies them to a folder of the user's and
registers the kernel every notebook names ("Python (meetinglib)") in the environment
the package is installed in.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from meetinglib.core.errors import OutputExistsError
from meetinglib.runner import PACKAGE_NOTEBOOKS

KERNEL = "meetinglib"
KERNEL_DISPLAY = "Python (meetinglib)"


def install_notebooks(
    folder: Path, *, force: bool = False, prefix: str | None = None
) -> list[Path]:
    """Copy the package's notebooks into ``folder`` and register the kernel they name
    under ``prefix`` (default: this environment's); returns the notebooks written.

    A notebook already in ``folder`` (perhaps edited) is kept unless ``force``:
    OutputExistsError names them, and nothing is copied.
    """
    from ipykernel.kernelspec import install

    sources = sorted(PACKAGE_NOTEBOOKS.glob("*.ipynb"))
    there = [folder / s.name for s in sources if (folder / s.name).exists()]
    if there and not force:
        raise OutputExistsError(
            f"{', '.join(str(p) for p in there)} exist already; pass --force to replace "
            "them with the package's, or choose another --dir"
        )
    folder.mkdir(parents=True, exist_ok=True)
    written = [Path(shutil.copy2(s, folder / s.name)) for s in sources]
    install(kernel_name=KERNEL, display_name=KERNEL_DISPLAY, prefix=prefix or sys.prefix)
    return written
