"""Each reader's own digest: topic and frequency preferences, the issue compiled once
per preference set among its recipients, delivery at a local time in waves, and click
counts that never name a reader."""
