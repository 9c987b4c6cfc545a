"""create_pretraining_data as a user runs it: ours vs the real original, whole processes.

  python benchmarks/bench_create_pretraining_data.py [--sizes_mb=1.4,10] [--trials=3]
  python benchmarks/bench_create_pretraining_data.py --mode=inprocess ...   (see below)

Contenders, each a fresh process started by this script, same flags
(--vocab_file=tests/data/vocab_uncased.txt (30522 entries, uncased), --max_seq_length=128
--max_predictions_per_seq=20 --masked_lm_prob=0.15 --short_seq_prob=0.1 --dupe_factor=10
--random_seed=12345), one input file, one output file:
  original  google-research/bert's own bert/create_pretraining_data.py and
            bert/tokenization.py from PyPI bert-tensorflow==1.0.4 (pip install --no-deps
            bert-tensorflow==1.0.4), run by benchmarks/run_original.py (which only makes
            sure the TF1 names it uses exist under TensorFlow 2.21) in one process;
  ours      python -m data_prep.create_pretraining_data --num_workers=1 (this process does
            all the work: read, tokenize, instances, encode, write).
Inputs: the shipped books (data/corpus_sentences/*.txt, 1.37 MB, joined with a blank line
between books so that each stays a document) repeated to about each of --sizes_mb (a size
below 1.37 MB takes the first lines of that text) in one file. Repeating the books repeats
their words, which ours' memo of distinct tokens profits from and the original (no memo)
does not: a real corpus of that size has more distinct words.

Per run: wall seconds of the child process, its CPU seconds (user + sys, from os.wait4, so
child processes it waited for are included) and its peak RSS (ru_maxrss). Every trial runs
every contender of every size once, in an order that rotates from trial to trial, so that
other load on the machine hits them alike; the tables give medians over --trials. With one
process each, per-core ratios are original seconds / ours seconds, by wall and by CPU time.

Checks (first trial of each size): the number of records of both outputs, and every record
parsed as a tf.train.Example equal to the original's in the same order (our Examples are
byte-for-byte the same messages with their map entries in key order; the original's
protobuf writes them in its own order, so the files differ in bytes, not in content).

Bytecode: data_prep is compiled to .pyc files first (compileall), as installing a package
does (pip compiles the original's bert/ that way): with PYTHONDONTWRITEBYTECODE set, as on
some machines, an editable checkout would otherwise recompile its modules in every process
(~40 ms).

Start-up: both contenders on a --startup_kb input (a few instances), which is what a
process pays before its first instance (imports, vocabulary, compiled kernels from numba's
cache). On the largest size, --two_workers also runs ours on the same text as two files
(--num_shards=2) with --num_workers=1 and --num_workers=2 (byte-identical outputs, checked):
the 2-worker speed-up over 1 worker, and its CPU per instance.

--mode=inprocess runs benchmarks/cpd_inprocess.py (ours as library calls against
tests/data_prep/reference_pretraining_data.py, a re-implementation of the original algorithm
used by the tests as the correctness oracle, in one warm process; its own flags follow).
"""
from __future__ import annotations

import argparse
import datetime
import filecmp
import os
import platform
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from importlib import metadata

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VOCAB = os.path.join(REPO, "tests", "data", "vocab_uncased.txt")
CORPUS = os.path.join(REPO, "data", "corpus_sentences")
RUN_ORIGINAL = os.path.join(REPO, "benchmarks", "run_original.py")


def original_installed() -> bool:
    try:
        return metadata.version("bert-tensorflow") == "1.0.4"
    except metadata.PackageNotFoundError:
        return False


def corpus_text() -> str:
    books = []
    for name in sorted(os.listdir(CORPUS)):
        with open(os.path.join(CORPUS, name), encoding="utf-8") as f:
            books.append(f.read().rstrip("\n") + "\n")
    return "\n".join(books)  # a blank line between books: each ends a document


def make_input(path: str, size_mb: float, parts: int = 1) -> list[str]:
    """The books repeated (or cut at a line) to about size_mb, as `parts` files.

    Written copy by copy, so that this process stays small (see run_process)."""
    text = corpus_text()
    data = text.encode()
    target = int(size_mb * 1e6)
    if target < len(data):
        copies, text = 1, data[:max(data[:target].rfind(b"\n"), 0) + 1].decode()
    else:
        copies = max(1, round(target / len(data)))
    if copies < parts:  # one copy in `parts` files: split it between documents
        docs = text.split("\n\n")
        per = -(-len(docs) // parts)
        groups = [["\n\n".join(docs[i:i + per]).rstrip("\n") + "\n"]
                  for i in range(0, len(docs), per)]
    else:
        per = -(-copies // parts)
        groups = [[text] * len(range(i, min(i + per, copies))) for i in range(0, copies, per)]
    files = []
    for k, pieces in enumerate(groups):
        name = f"{path}.part{k}" if parts > 1 else path
        with open(name, "w", encoding="utf-8") as f:
            for i, piece in enumerate(pieces):
                f.write(("\n" if i else "") + piece)
        files.append(name)
    return files


def common_flags(dupe_factor: int) -> list[str]:
    return [f"--vocab_file={VOCAB}", "--do_lower_case=True", "--max_seq_length=128",
            "--max_predictions_per_seq=20", "--masked_lm_prob=0.15", "--short_seq_prob=0.1",
            f"--dupe_factor={dupe_factor}", "--random_seed=12345"]


def command(contender: str, inputs: list[str], out: str, dupe_factor: int,
            workers: int = 1) -> list[str]:
    flags = common_flags(dupe_factor) + [f"--input_file={','.join(inputs)}"]
    if contender == "original":
        return [sys.executable, RUN_ORIGINAL, f"--output_file={out}"] + flags
    # One input: the default sharding, one shard up to --max_shard_mb (128 MB; the original's
    # single shard, so the same Examples) and one per 128 MB piece of a larger file.
    outputs = [f"--output_dir={out}"] + ([f"--num_shards={len(inputs)}"] if len(inputs) > 1
                                         else [])
    return ([sys.executable, "-m", "data_prep.create_pretraining_data"] + flags + outputs
            + [f"--num_workers={workers}"])


def become_subreaper(on: bool = True) -> bool:
    """Makes this process the reaper of its orphaned descendants (Linux prctl).

    So that a worker pool's fork server, left behind when ours' main process exits, is
    reparented to this process and its CPU time (with that of the workers it reaped) can be
    collected by reap_descendants. False where unavailable: multi-worker CPU is then the
    main process's alone."""
    try:
        import ctypes
        return ctypes.CDLL(None).prctl(36, int(on), 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def reap_descendants(timeout: float = 30.0) -> tuple[float, float]:
    """Waits for every remaining descendant -> (their CPU seconds, largest peak RSS in MB)."""
    cpu, rss, deadline = 0.0, 0.0, time.time() + timeout
    while time.time() < deadline:
        try:
            pid, _, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.01)
            continue
        cpu += usage.ru_utime + usage.ru_stime
        rss = max(rss, usage.ru_maxrss / 1024)
    return cpu, rss


def run_process(cmd: list[str], log_path: str) -> dict:
    """Runs cmd to completion -> wall s, cpu s (user + sys of it and all its descendants,
    from wait4), rss MB (peak RSS of its largest process)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    with open(log_path, "wb") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    more_cpu, more_rss = reap_descendants()
    if proc.returncode:
        with open(log_path, "rb") as f:
            tail = f.read()[-3000:].decode(errors="replace")
        raise SystemExit(f"{' '.join(cmd)}\nexited with {proc.returncode}:\n{tail}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime + more_cpu,
            "rss": max(usage.ru_maxrss / 1024, more_rss)}


def tfrecord_payloads(path: str) -> list[bytes]:
    """The records of an uncompressed TFRecord file (framing read directly, CRCs skipped)."""
    with open(path, "rb") as f:
        data = f.read()
    records, i = [], 0
    while i < len(data):
        (n,) = struct.unpack_from("<Q", data, i)
        records.append(data[i + 12:i + 12 + n])
        i += 16 + n
    return records


def output_files(path: str) -> list[str]:
    """The TFRecord file(s) of one run: the file itself, or the shards of an output dir."""
    if os.path.isdir(path):
        return [os.path.join(path, name) for name in sorted(os.listdir(path))
                if "-of-" in name and not name.endswith(".json")]
    return [path]


def count_records(path: str) -> int:
    """Records of an uncompressed TFRecord output (the framing read, payloads skipped)."""
    count = 0
    for name in output_files(path):
        with open(name, "rb") as f:
            while header := f.read(12):
                (n,) = struct.unpack_from("<Q", header)
                f.seek(n + 4, os.SEEK_CUR)
                count += 1
    return count


def same_examples(a_path: str, b_path: str) -> tuple[int, int, int]:
    """(records of a, of b, how many parse, position by position, to equal Examples).

    Run in a child process (--mode=compare): the records and TensorFlow's protobuf would
    otherwise stay in this process, and Linux hands a parent's peak RSS on to the ru_maxrss
    of the children it starts afterwards."""
    from tensorflow.core.example import example_pb2
    parse = example_pb2.Example.FromString
    a = [r for name in output_files(a_path) for r in tfrecord_payloads(name)]
    b = [r for name in output_files(b_path) for r in tfrecord_payloads(name)]
    return len(a), len(b), sum(x == y or parse(x) == parse(y) for x, y in zip(a, b))


def compare_in_child(a_path: str, b_path: str) -> tuple[int, int, int]:
    result = subprocess.run([sys.executable, os.path.abspath(__file__), "--mode=compare",
                             a_path, b_path], capture_output=True, text=True, cwd=REPO)
    if result.returncode:
        raise SystemExit(f"comparing {a_path} and {b_path} failed:\n{result.stderr[-3000:]}")
    a, b, equal = map(int, result.stdout.split()[-3:])
    return a, b, equal


def same_files(a_path: str, b_path: str) -> bool:
    a, b = output_files(a_path), output_files(b_path)
    return len(a) == len(b) and all(filecmp.cmp(x, y, shallow=False) for x, y in zip(a, b))


def remove_output(out: str) -> None:
    shutil.rmtree(out, ignore_errors=True)
    for leftover in (out, out + ".manifest.json", out + ".summary.json"):
        if os.path.isfile(leftover):
            os.remove(leftover)


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = []
    for dist in ("tensorflow", "numba", "numpy", "bert-tensorflow"):
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{dist} missing")
    return (f"{model}, {os.cpu_count()} cores; Python {platform.python_version()}, "
            f"{', '.join(versions)}")


def main_process(argv=None) -> int:
    try:
        return _main_process(argv)
    finally:
        become_subreaper(False)


def _main_process(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes_mb", default="1.4,10",
                        help="input sizes in MB, both contenders (the original needs ~1.5 GB "
                             "of memory and ~11 s of CPU per MB of input)")
    parser.add_argument("--ours_only_sizes_mb", default="",
                        help="sizes for ours alone (e.g. 100, where the original would need "
                             "~20 min and more memory than a small machine has)")
    parser.add_argument("--trials", type=int, default=3, help="runs of each row (medians)")
    parser.add_argument("--dupe_factor", type=int, default=10)
    parser.add_argument("--startup_kb", type=float, default=4.0,
                        help="input size of the start-up rows (0: no start-up rows)")
    parser.add_argument("--two_workers", default="on", choices=("on", "off"),
                        help="ours with 2 shards, 1 and 2 workers, on the largest size")
    parser.add_argument("--keep_dir", default="", help="keep inputs, outputs and logs here")
    args = parser.parse_args(argv)
    if not original_installed():
        raise SystemExit("bert-tensorflow==1.0.4 is not installed: "
                         "pip install --no-deps bert-tensorflow==1.0.4")
    import compileall
    compileall.compile_dir(os.path.join(REPO, "data_prep"), quiet=1)  # (see Bytecode above)
    subreaper = become_subreaper()
    sizes = [float(x) for x in args.sizes_mb.split(",") if x]
    ours_only = [float(x) for x in args.ours_only_sizes_mb.split(",") if x]
    tmp = args.keep_dir or tempfile.mkdtemp(prefix="bench_cpd_")
    os.makedirs(tmp, exist_ok=True)
    rows: list[tuple] = []  # (row key, label, contender, inputs, workers)
    if args.startup_kb > 0:
        tiny = make_input(os.path.join(tmp, "startup.txt"), args.startup_kb / 1e3)
        rows += [(("startup", c), f"start-up ({args.startup_kb:g} KB input)", c, tiny, 1)
                 for c in ("original", "ours")]
    for mb in sizes:
        files = make_input(os.path.join(tmp, f"in-{mb:g}MB.txt"), mb)
        rows += [((mb, c), f"{mb:g} MB", c, files, 1) for c in ("original", "ours")]
    for mb in ours_only:
        files = make_input(os.path.join(tmp, f"in-{mb:g}MB.txt"), mb)
        rows.append(((mb, "ours"), f"{mb:g} MB", "ours", files, 1))
    largest = max(sizes + ours_only) if sizes or ours_only else None
    if args.two_workers == "on" and largest is not None:
        halves = make_input(os.path.join(tmp, f"in2-{largest:g}MB.txt"), largest, parts=2)
        rows += [((largest, f"ours2x{w}"), f"{largest:g} MB, 2 shards", f"ours, {w} worker(s)",
                  halves, w) for w in (1, 2)]
    sizes_of = {key: sum(os.path.getsize(f) for f in files) / 1e6
                for key, _, _, files, _ in rows}
    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {machine()}")
    inputs = ", ".join(f"{label} = {sizes_of[key]:.3f} MB"
                       for key, label, contender, _, _ in rows if contender == "ours")
    print(f"inputs: {inputs}; dupe_factor={args.dupe_factor}, max_seq_length=128, "
          f"trials={args.trials}")
    results: dict = {key: [] for key, *_ in rows}
    counts: dict = {}
    outs: dict = {}
    checks: list[str] = []
    loads = []
    for trial in range(args.trials):
        order = rows[trial % len(rows):] + rows[:trial % len(rows)]
        for key, label, contender, files, workers in order:
            out = os.path.join(tmp, f"out-{key[0]}-{key[1]}".replace(" ", "_").replace(",", ""))
            remove_output(out)  # a fresh run each time: no resume
            name = "original" if contender == "original" else "ours"
            cmd = command(name, files, out, args.dupe_factor, workers)
            results[key].append(run_process(cmd, out + ".log"))
            loads.append(os.getloadavg()[0])
            if trial == 0:
                outs[key] = out
                counts[key] = count_records(out)
            else:
                remove_output(out)
        if trial == 0:  # the checks, outside the timed runs
            for key, label, contender, _, _ in rows:
                if contender == "ours" and (key[0], "original") in outs:
                    a, b, equal = compare_in_child(outs[(key[0], "original")], outs[key])
                    checks.append(f"{label}: {a} / {b} records (original / ours), "
                                  f"{equal} equal as Examples")
                    if a != b or equal != a:
                        raise SystemExit("outputs differ: " + checks[-1])
            if args.two_workers == "on" and largest is not None:
                same = same_files(outs[(largest, "ours2x1")], outs[(largest, "ours2x2")])
                checks.append(f"{largest:g} MB, 2 shards: 1 and 2 workers wrote "
                              f"{'byte-identical' if same else 'DIFFERENT'} shards "
                              f"({counts[(largest, 'ours2x1')]} records)")
                if not same:
                    raise SystemExit("outputs differ: " + checks[-1])
            if not args.keep_dir:
                for out in outs.values():
                    remove_output(out)
    median = statistics.median
    m = {key: {k: median(r[k] for r in rs) for k in ("wall", "cpu", "rss")}
         for key, rs in results.items()}
    print("\n".join(f"check: {c}" for c in checks))
    if not subreaper:
        print("(not a Linux subreaper: CPU of worker processes is not counted)")
    own_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"load average (1 min) during the runs: {min(loads):.2f}-{max(loads):.2f}; "
          f"this script's own peak RSS {own_rss:.0f} MB "
          "(Linux reports a child's RSS as at least its parent's at the start)")
    print("\n| input | instances | original wall s | original CPU s | original RSS MB "
          "| ours wall s | ours CPU s | ours RSS MB | x per core (wall) | x per core (CPU) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key, label, contender, _, _ in rows:
        if contender != "ours":
            continue
        o, u = m.get((key[0], "original")), m[key]
        size = f"{label} ({sizes_of[key]:.2f} MB)" if key[0] != "startup" else label
        if o:
            print(f"| {size} | {counts[key]} | {o['wall']:.2f} | {o['cpu']:.2f} | "
                  f"{o['rss']:.0f} | {u['wall']:.2f} | {u['cpu']:.2f} | {u['rss']:.0f} | "
                  f"{o['wall'] / u['wall']:.1f} | {o['cpu'] / u['cpu']:.1f} |")
        else:
            print(f"| {size} | {counts[key]} | - | - | - | {u['wall']:.2f} | {u['cpu']:.2f} | "
                  f"{u['rss']:.0f} | - | - |")
    if args.two_workers == "on" and largest is not None:
        one, two = m[(largest, "ours2x1")], m[(largest, "ours2x2")]
        n = counts[(largest, "ours2x1")]
        print(f"\n| ours, {largest:g} MB as 2 files, --num_shards=2 | wall s | CPU s | RSS MB "
              f"(largest process) | instances/s | CPU us / instance |")
        print("|---|---|---|---|---|---|")
        for w, r in ((1, one), (2, two)):
            print(f"| --num_workers={w} | {r['wall']:.2f} | {r['cpu']:.2f} | {r['rss']:.0f} | "
                  f"{n / r['wall']:.0f} | {r['cpu'] / n * 1e6:.1f} |")
        print(f"2 workers / 1 worker: {one['wall'] / two['wall']:.2f}x wall "
              f"({one['wall'] / two['wall'] / 2:.2f}x per core), CPU per instance "
              f"{two['cpu'] / one['cpu']:.2f}x")
    if not args.keep_dir:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    mode = "process"
    for a in list(argv):
        if a.startswith("--mode="):
            mode = a.split("=", 1)[1]
            argv.remove(a)
    if mode == "compare":  # the check's child process (see same_examples)
        print(*same_examples(*argv))
        return 0
    if mode == "inprocess":
        sys.path.insert(0, REPO)
        from benchmarks import cpd_inprocess
        cpd_inprocess.main(argv)
        return 0
    if mode != "process":
        raise SystemExit(f"--mode must be process or inprocess, got {mode}")
    return main_process(argv)


if __name__ == "__main__":
    sys.exit(main())
