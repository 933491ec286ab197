"""Coverage-guided fuzz target for the message decoder (atheris, libFuzzer underneath).

Run directly: `python tests/fuzz/decode_target.py -max_total_time=60 [corpus dir]`. Any
exception other than MalformedMessage, or a decoded message that does not survive encoding
and decoding again, ends the run with the input that caused it (libFuzzer's crash-* file).
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from resolver.dns import decoding, scanner

from tests.fuzz.decode_properties import check_decoded_message_round_trips


def fuzz_one(data: bytes) -> None:
    try:
        message = decoding.decode(data)
    except scanner.MalformedMessage:
        return
    check_decoded_message_round_trips(message)


def main() -> None:
    atheris.Setup(sys.argv, fuzz_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
