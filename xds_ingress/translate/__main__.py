"""`python -m xds_ingress.translate --annotations-markdown`: the README's annotation reference;
`--nginx-markdown`: the table of docs/moving-from-ingress-nginx.md."""

from __future__ import annotations

import sys

from xds_ingress.translate import nginx
from xds_ingress.translate.annotations import markdown


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--nginx-markdown"]:
        sys.stdout.write(nginx.markdown())
        return 0
    if args != ["--annotations-markdown"]:
        print("usage: python -m xds_ingress.translate --annotations-markdown | --nginx-markdown", file=sys.stderr)
        return 2
    sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
