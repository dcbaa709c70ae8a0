#!/usr/bin/env python3
"""Reads encrypted Tidemark snapshot parts with Spark (pyspark, local mode).

    python3 integrations/spark/read_snapshot.py --properties FILE --jar JAR \
        [--sum-column COL] PATH_OR_GLOB...

FILE holds `key=value` Spark settings, one a line (blank lines and lines
starting with `#` are skipped), typically:

    spark.hadoop.parquet.crypto.factory.class=org.apache.parquet.crypto.keytools.PropertiesDrivenCryptoFactory
    spark.hadoop.parquet.encryption.kms.client.class=io.tidemark.parquet.KeyListKmsClient
    spark.hadoop.parquet.encryption.key.list=tidemark.snap-<id>:<base64 key>

JAR is what `integrations/spark/build` prints. Paths may be files, folders or
Hadoop globs. Prints one JSON line on stdout:

    {"rows": N, "sum": <sum of COL, or null>, "columns": [names]}

Note that only the columns a query reads are decrypted and so authenticated:
`rows` comes from the footers alone, so pass --sum-column to check a column's
pages too. On failure exits 1 with the Java exception chain's messages, one
line each, on stderr (--verbose keeps Spark's own logging as well).
"""

import argparse
import decimal
import json
import os
import shlex
import sys
import tempfile

# Spark's logging off: a failed task otherwise logs its whole stack trace, and
# the messages that matter are printed from the exception chain below.
QUIET_LOG4J2 = """\
rootLogger.level = off
rootLogger.appenderRef.stderr.ref = stderr
appender.console.type = Console
appender.console.name = stderr
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %p %c{1}: %m%n
# Spark, started by pyspark, sets the console to the level of the logger of
# the class that logs first (WARN unless configured) and says so on stderr;
# configured here at the root's level, it stays quiet.
logger.spark.name = org.apache.spark
logger.spark.level = off
"""

# Spark's default, "(?i)secret|password|token|access[.]?key|credential", and
# the Parquet key list (spark.hadoop.parquet.encryption.key.list and the
# Hadoop property it becomes).
REDACTION_REGEX = r"(?i)secret|password|token|access[.]?key|credential|parquet[.]encryption[.]key[.]list"


def java_properties_escape(text):
    """Text as java.util.Properties reads it back: a backslash escapes, and
    ':', '=' or a space would end a key."""
    for char in "\\:= ":
        text = text.replace(char, "\\" + char)
    return text


def read_properties(path):
    """The file's key=value lines, in order. Values are never echoed: the
    key list holds key bytes."""
    props = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                sys.exit(f"read_snapshot: {path}:{number}: not a key=value line")
            props.append((key.strip(), value.strip()))
    return props


def json_number(value):
    """A sum as JSON: Spark gives int, float or (for decimal columns) Decimal,
    which json cannot encode; str() of a Decimal is a valid JSON number."""
    if value is None:
        return "null"
    if isinstance(value, decimal.Decimal):
        return str(value)
    return json.dumps(value)


def java_messages(error):
    """One 'Class: first line of message' per exception in the Java cause
    chain, duplicates dropped; Python's own text when there is no Java side."""
    throwable = getattr(error, "java_exception", None) or getattr(error, "_origin", None)
    if throwable is None:
        return [f"{type(error).__name__}: {error}".splitlines()[0]]
    lines, seen = [], set()
    while throwable is not None and len(lines) < 8:
        text = throwable.toString().strip().splitlines()
        line = text[0][:500] if text else throwable.getClass().getName()
        if line not in seen:
            seen.add(line)
            lines.append(line)
        throwable = throwable.getCause()
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--properties", required=True, help="key=value Spark settings")
    parser.add_argument("--jar", required=True, help="the KMS client jar (integrations/spark/build)")
    parser.add_argument("--sum-column", help="a numeric column to sum")
    parser.add_argument("--verbose", action="store_true", help="keep Spark's logging")
    parser.add_argument("paths", nargs="+", metavar="PATH_OR_GLOB")
    args = parser.parse_args()
    props = read_properties(args.properties)
    if not os.path.isfile(args.jar):
        sys.exit(f"read_snapshot: no jar at {args.jar} (run integrations/spark/build)")

    # Loopback only: Spark otherwise resolves the hostname and binds to the
    # first non-loopback interface. SPARK_HOME unset so the pip-installed
    # pyspark runs: `build` compiled the jar against its jars.
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    os.environ["SPARK_LOCAL_HOSTNAME"] = "localhost"
    os.environ.pop("SPARK_HOME", None)

    # The JVM inherits our stdout and may print there; keep the real stdout
    # for the one JSON line and point fd 1 at stderr for everything else.
    out = os.dup(1)
    os.dup2(2, 1)

    import logging

    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    with tempfile.TemporaryDirectory(prefix="tidemark-spark-") as tmp:  # mode 0700
        settings = {
            "spark.app.name": "tidemark-read-snapshot",
            "spark.master": "local[1]",  # small files; leaves a core to the caller
            "spark.driver.memory": "512m",
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.sql.catalogImplementation": "in-memory",  # no Hive metastore (Derby files)
            "spark.sql.shuffle.partitions": "1",
            "spark.local.dir": tmp,
            # Spark's default regex does not match the key list; this one
            # redacts it wherever Spark shows or logs its configuration.
            "spark.redaction.regex": REDACTION_REGEX,
        }
        # C1 only: a run this short ends before C2's compiles pay off (a
        # whole run measured 14 s before, 10 s after, on 2 shared cores).
        java_options = "-XX:TieredStopAtLevel=1"
        if not args.verbose:
            log4j = os.path.join(tmp, "log4j2.properties")
            with open(log4j, "w", encoding="utf-8") as f:
                f.write(QUIET_LOG4J2)
            java_options += f" -Dlog4j2.configurationFile=file:{log4j}"
            # pyspark also logs each captured error, with its JVM trace, as JSON.
            logging.disable(logging.CRITICAL)
        settings.update(props)  # the caller's file wins over the defaults above
        # ...except that its JVM options add to ours rather than replace them.
        settings["spark.driver.extraJavaOptions"] = " ".join(
            filter(None, [java_options, settings.get("spark.driver.extraJavaOptions")])
        )
        settings["spark.jars"] = args.jar

        # Settings go to spark-submit in a private file, not as builder
        # configs: pyspark turns those into `--conf key=value` arguments, and
        # a JVM's arguments (the key list among them) are readable by every
        # local user for as long as it runs.
        spark_properties = os.path.join(tmp, "spark.properties")
        with open(spark_properties, "w", encoding="utf-8") as f:
            for key, value in settings.items():
                f.write(f"{java_properties_escape(key)}={java_properties_escape(value)}\n")
        os.environ["PYSPARK_SUBMIT_ARGS"] = (
            f"--properties-file {shlex.quote(spark_properties)} pyspark-shell"
        )

        spark = None
        try:
            spark = SparkSession.builder.getOrCreate()
            df = spark.read.parquet(*args.paths)
            # One pass: the count and the sum in the same aggregate.
            aggregates = [F.count(F.lit(1))]
            if args.sum_column:
                aggregates.append(F.sum(F.col(args.sum_column)))
            row = df.agg(*aggregates).collect()[0]
            result = '{"rows": %d, "sum": %s, "columns": %s}' % (
                row[0],
                json_number(row[1] if args.sum_column else None),
                json.dumps(df.columns),
            )
        except Exception as error:  # Py4JJavaError, Spark's captured errors
            print("read_snapshot: reading failed:", file=sys.stderr)
            for number, line in enumerate(java_messages(error)):
                print(("  caused by: " if number else "  ") + line, file=sys.stderr)
            return 1
        finally:
            if spark is not None:
                spark.stop()
    os.write(out, (result + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
