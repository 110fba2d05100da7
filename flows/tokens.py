"""Tokenization: prepare the tokenizer (pretrained tiktoken or trained on the run), then token shards.

`python flows/tokens.py --config configs/small.yaml`
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script

from prefect import flow  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from flows.common import DEFAULT_CONFIG, documented, resolve, run_name, run_stage, stage_cli  # noqa: E402
from flows.artifacts import publish_token_stats  # noqa: E402
from tasks.shard_tasks import prepare_tokenizer_task  # noqa: E402


@flow(name="tokens", flow_run_name=run_name("tokens"), task_runner=ThreadPoolTaskRunner(max_workers=8))
@documented
def tokens_flow(config_path: str = DEFAULT_CONFIG, partition: str | None = None, data_root: str | None = None,
                run_dir: str | None = None) -> dict:
    """Load or train the tokenizer once, then one task per shard."""
    cfg, ref, run_dir = resolve(config_path, partition, data_root, run_dir)
    tokenizer = prepare_tokenizer_task(ref, run_dir)
    summary = run_stage(ref, run_dir, "tokens")
    stats = publish_token_stats(cfg, run_dir)
    return {**summary, "tokenizer": tokenizer, "token_stats": stats}


if __name__ == "__main__":
    stage_cli(tokens_flow, __doc__)
