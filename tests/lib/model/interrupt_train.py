"""`crawl2model train` whose every rank dies (``os._exit``, no cleanup, like SIGKILL) when it asks
for its ``STOP_AT``-th batch: the same step on all ranks of a torchrun job."""

import os
import sys

from pipeline_lib.model import data

STOP_AT = int(os.environ.get("STOP_AT", "0"))
if STOP_AT:
    _next_batch, _calls = data.WindowSampler.next_batch, [0]

    def next_batch(self):
        _calls[0] += 1
        if _calls[0] == STOP_AT:
            os._exit(9)
        return _next_batch(self)

    data.WindowSampler.next_batch = next_batch

if __name__ == "__main__":
    from crawl2model.cli import main

    sys.exit(main(sys.argv[1:]))
