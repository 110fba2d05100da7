"""crawl2model's plain-Python core: every stage, shard I/O and the model. Never imports prefect."""

__version__ = "0.1.0"
