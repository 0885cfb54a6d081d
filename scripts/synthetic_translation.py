"""Write the synthetic en→vi translation task in the Stanford NMT layout (plmu.data.translation.write_synthetic).

    python scripts/synthetic_translation.py OUT [--order swap|monotone|reverse] [--num-train 4000] [--vocab 40] ...
    plmu-train experiment=iwslt15_en_vi_synthetic task.data.path=OUT

OUT gets train/tst2012/tst2013 .en/.vi and vocab.en/vocab.vi: sources of distinct random words w<i>, targets with
every word renamed v<π(i)> and reordered (swap: each pair of words exchanged; monotone; reverse).
"""

from __future__ import annotations

import argparse

from plmu.data.synthetic_translation import SYNTHETIC_ORDERS, write_synthetic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="the folder to write (created if missing)")
    parser.add_argument("--num-train", type=int, default=4000)
    parser.add_argument("--num-val", type=int, default=200)
    parser.add_argument("--num-test", type=int, default=200)
    parser.add_argument("--vocab", type=int, default=40, help="source words (as many target words)")
    parser.add_argument("--min-length", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=10)
    parser.add_argument("--order", choices=SYNTHETIC_ORDERS, default="swap")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    folder = write_synthetic(
        args.out, args.num_train, args.num_val, args.num_test, args.vocab, args.min_length, args.max_length,
        args.order, args.seed,
    )  # fmt: skip
    print(
        f"wrote {folder}: train {args.num_train}, tst2012 {args.num_val}, tst2013 {args.num_test} pairs ({args.order})"
    )


if __name__ == "__main__":
    main()
