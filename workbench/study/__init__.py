"""Studies: grids of runs (objectives x archs x graphs x presets x overrides x seeds) from a
TOML file, each run trained, evaluated, probed and patched as a Ray task, gathered into one
tidy ``study.csv`` with a figure and a report page.

    workbench study studies/remedies.toml --subset quick --dry-run

    OUT/checkpoints/{run}/   OUT/results/{run}/   OUT/study.csv   OUT/summary.csv
    OUT/{figure}.png         OUT/report.html

``spec`` reads the file and expands the grid; ``run`` is one run's task; ``driver`` runs
the tasks on Ray and gathers; ``estimate`` turns measured step rates into times; ``figures``
and ``report`` draw the page from study.csv.
"""

from workbench.study.driver import dry_run, gather, run_study
from workbench.study.spec import Study, StudyRun, load_study

__all__ = ["Study", "StudyRun", "dry_run", "gather", "load_study", "run_study"]
