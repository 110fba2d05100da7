"""Language identification: fastText lid.176 with a threshold per language.

Run alone over an existing run dir: `python flows/langid.py --config configs/small.yaml`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script

from flows.common import make_stage_flow, stage_cli  # noqa: E402

langid_flow = make_stage_flow("langid", __doc__)

if __name__ == "__main__":
    stage_cli(langid_flow, __doc__)
