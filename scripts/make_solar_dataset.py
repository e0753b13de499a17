"""How data/solar-hourly.csv was made (run once; not needed at run time).

Three typical-meteorological-year files that pvlib ships (pvlib/data: 703165TY.csv, 723170TYA.CSV,
12839.tm2; NREL's TMY3/TMY2, U.S. public data) read with pvlib's own readers, March 1 - April 29 of each (60 days),
hourly, as ``site,time,ghi,temp_air`` with UTC ISO-8601 times. Needs ``pip install pvlib`` (0.16).
"""

from __future__ import annotations

import csv
import os
import sys

import pandas as pd
import pvlib
from pvlib.iotools import read_tmy2, read_tmy3


def main(out: str) -> None:
    base = os.path.join(os.path.dirname(pvlib.__file__), "data")
    frames = []
    for name, fname in (("Sand Point, AK", "703165TY.csv"), ("Greensboro, NC", "723170TYA.CSV")):
        df, _ = read_tmy3(os.path.join(base, fname), map_variables=True, coerce_year=1990)
        frames.append((name, df["ghi"], df["temp_air"]))
    df, _ = read_tmy2(os.path.join(base, "12839.tm2"))
    df.index = df.index.map(lambda t: t.replace(year=1990))
    frames.append(("Miami, FL", df["GHI"], df["DryBulb"] / 10.0))  # TMY2 keeps tenths of a degree
    rows = []
    for name, ghi, temp in frames:
        utc = ghi.index.tz_convert("UTC")
        keep = (utc >= pd.Timestamp("1990-03-01", tz="UTC")) & (utc < pd.Timestamp("1990-04-30", tz="UTC"))
        for t, g, a in zip(utc[keep], ghi[keep], temp[keep], strict=True):
            rows.append((t.strftime("%Y-%m-%dT%H:%M:%SZ"), name, float(g), float(a)))
    rows.sort()
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
        w.writerow(["site", "time", "ghi", "temp_air"])
        for t, name, g, a in rows:
            w.writerow([name, t, f"{g:g}", f"{a:g}"])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "data/solar-hourly.csv")
