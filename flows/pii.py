"""PII scrubbing: presidio, offline, found values replaced.

Run alone over an existing run dir: `python flows/pii.py --config configs/small.yaml`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script

from flows.common import make_stage_flow, stage_cli  # noqa: E402

pii_flow = make_stage_flow("pii", __doc__)

if __name__ == "__main__":
    stage_cli(pii_flow, __doc__)
