"""The work of ``i2sb-degrade`` (:mod:`.degrade` holds its schema): plan the run, degrade every image, report."""

from __future__ import annotations

import sys

from ..degrade.degrade_folder import plan
from ..degrade.degrade_folder import run as degrade_all
from .degrade import PROG, DegradeOptions
from .usage import EXIT_USAGE


def run(options: DegradeOptions) -> int:
    """Check the run (usage errors: exit 2, nothing written), degrade every image; exit 1 if some were skipped."""
    try:
        checked = plan(options.task, options.input, options.output, options.masks, options.seed, options.format,
                       dict(options.params), options.crop)
    except (ValueError, FileNotFoundError) as err:
        print(f"{PROG}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return EXIT_USAGE
    result = degrade_all(checked, log=lambda message: print(f"{PROG}: {message}", file=sys.stderr))
    masks = f"; {len(result.masks)} mask(s) into {checked.masks} (i2sb-sample mask={checked.masks})" \
        if checked.masks is not None else ""
    print(f"{PROG}: wrote {len(result.written)} image(s) into {checked.output}{masks}; "
          f"skipped {len(result.failures)}")
    return 1 if result.failures else 0
