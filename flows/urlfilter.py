"""URL blocklist: drop pages from blocked domains and URLs.

Run alone over an existing run dir: `python flows/urlfilter.py --config configs/small.yaml`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script

from flows.common import make_stage_flow, stage_cli  # noqa: E402

urlfilter_flow = make_stage_flow("urlfilter", __doc__)

if __name__ == "__main__":
    stage_cli(urlfilter_flow, __doc__)
