"""One module per command group; each exposes ``register(subparsers)``.

A command sets ``func`` on its parser (``parser.set_defaults(func=...)``); ``func(args)`` returns
the process exit code. Heavy imports (torch, presidio, prefect) stay inside the functions so that
``crawl2model --help`` is instant.
"""

MODULES = [
    "crawl2model.commands.run",       # run (Prefect, embedded by default)
    "crawl2model.commands.ops",       # serve, backfill (deployments on a Prefect server)
    "crawl2model.commands.data",      # inspect, verify
    "crawl2model.commands.crawl",     # crawl, ingest-warc, ingest-docs
    "crawl2model.commands.eval",      # eval extraction|langid|dedup|pii
    "crawl2model.commands.tokens",    # tokens, train-tokenizer
    "crawl2model.commands.model",     # sample, next-token, train
]
