"""``python -m faults.toxiproxy [--host H] [--port P] [--config FILE] [--seed N]``."""

from __future__ import annotations

import argparse
import sys

from .server import run


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # exit code 2 with a clear message
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {text}")
    return value


def main(argv: list[str] | None = None) -> None:
    parser = _Parser(prog="python -m faults.toxiproxy", description="Toxiproxy-compatible fault proxy server")
    parser.add_argument("--host", default="127.0.0.1", help="API listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8474, help="API port, 0 picks a free one (default 8474)")
    parser.add_argument("--config", default=None, help="JSON file of proxies to create at start (populate format)")
    parser.add_argument("--seed", type=int, default=None, help="seed for jitter and toxicity (reproducible runs)")
    args = parser.parse_args(argv)
    run(args.host, args.port, args.config, args.seed)


if __name__ == "__main__":
    main()
