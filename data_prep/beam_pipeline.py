"""Pretraining data on an Apache Beam runner: the shards of create_pretraining_data, one per
Beam element, on a DirectRunner, Flink, Spark or Dataflow cluster instead of local processes.

  pip install -e ".[beam]"
  python -m data_prep.beam_pipeline --flagfile=flags/create_pretraining_data_tiny.flags \\
      -- --runner=DirectRunner --direct_num_workers=2 --direct_running_mode=multi_processing

Flags: exactly those of data_prep/create_pretraining_data.py (--num_workers is not used: the
runner's own options set the parallelism), plus --beam_pipeline_options, a string of Beam
pipeline options (for a flagfile). Beam options can also follow a `--` on the command line;
both are passed to Beam, and an option no Beam options class knows is an error.

The pipeline is

  Create(shard jobs) | Reshuffle | Map(build_shard) | ToList | Map(write_summary)

where the jobs are shards.plan_jobs(...) (same input groups, seeds
random_seed + k and fingerprints as the local runner) and build_shard is its process_shard,
unless the shard's file and matching manifest already exist (resume; checked on the worker).
So the shards are byte-identical to a local run with the same flags, and either runner
resumes the other's output. The summary is shards.summarize(...), written
to the same summary.json; "runner" takes the place of "num_workers", and "seconds" is the
wall time from the launch to the summary.

Every path (inputs, vocabulary, outputs) is read and written with ordinary file calls, so on
a cluster it must name the same file on the launcher and on every worker: a shared or
mounted file system (NFS, a FUSE mount of a bucket), not gs:// or s3:// URLs.

Beam 2.77's DirectRunner first tries to download its Prism runner and, offline, falls back to
the Python FnApiRunner; --runner=FnApiRunner (same --direct_* options) skips that attempt.

Beam is optional: apache_beam is imported only by the functions here that need it, and
nothing else in the package imports this module.
"""
from __future__ import annotations

import json
import shlex
import time
from typing import Sequence

from absl import app, flags, logging

from data_prep import command
from data_prep.files import atomic_io
from data_prep import create_pretraining_data
from data_prep.pretraining import shards as cpd


def build_shard(job: cpd.ShardJob) -> tuple[dict, bool]:
    """(manifest, skipped): process_shard(job), or the manifest of the finished shard.

    First removes the temporaries of this shard that dead writers on this host left (a killed
    run's); the worker that owns the shard is the one that can check their writers.
    """
    for stale in atomic_io.remove_stale_temporaries(job.output_file):
        logging.info("removed %s, left by a killed run", stale)
    finished = cpd._finished_manifest(job)
    if finished is not None:
        logging.info("shard %d already finished (%s), skipping it", job.index, job.output_file)
        return finished, True
    manifest = cpd.process_shard(job)
    logging.info("shard %d done: %d instances in %s", job.index,
                 manifest["counts"].get("instances", 0), job.output_file)
    return manifest, False


def write_summary(results: Sequence[tuple[dict, bool]], settings: cpd.Settings,
                  summary_file: str | None, num_shards: int, start: float,
                  runner: str) -> dict:
    """The local runner's summary of all shards' manifests, written to summary_file."""
    results = sorted(results, key=lambda result: result[0]["shard"])
    shards = [manifest["shard"] for manifest, _ in results]
    if shards != list(range(num_shards)):
        raise RuntimeError(f"expected the manifests of shards 0-{num_shards - 1}, got {shards}")
    return cpd.finish_summary([manifest for manifest, _ in results], settings, start,
                              sum(skipped for _, skipped in results), {"runner": runner},
                              summary_file)


def pipeline_options(args: Sequence[str]):
    """Beam PipelineOptions from command-line style args; ValueError for unknown options."""
    try:
        from apache_beam.options.pipeline_options import PipelineOptions
    except ImportError as e:
        raise ImportError(f"{e}: Apache Beam is an optional dependency; install it with "
                          "pip install -e \".[beam]\" (see README.md)") from e
    options = PipelineOptions(list(args))
    unknown = sorted(set(options.get_all_options(retain_unknown_options=True))
                     - set(options.get_all_options()))
    if unknown:
        raise ValueError("unknown Beam pipeline option(s): "
                         + ", ".join("--" + name for name in unknown))
    return options


def build_pipeline(pipeline, jobs: Sequence[cpd.ShardJob], settings: cpd.Settings,
                   summary_file: str | None, start: float, runner: str):
    """Adds the shard and summary steps to `pipeline`; returns the summary PCollection."""
    import apache_beam as beam
    return (pipeline
            | "ShardJobs" >> beam.Create(list(jobs))
            | "Distribute" >> beam.Reshuffle()
            | "BuildShards" >> beam.Map(build_shard)
            | "AllManifests" >> beam.combiners.ToList()
            | "WriteSummary" >> beam.Map(write_summary, settings, summary_file, len(jobs),
                                         start, runner))


def run_pipeline(input_files: Sequence[str], output_files: Sequence[str],
                 settings: cpd.Settings, summary_file: str,
                 pipeline_args: Sequence[str] = ()) -> dict:
    """create_pretraining_data(...) on a Beam runner; waits and returns the summary.

    pipeline_args: Beam options, e.g. ["--runner=DirectRunner", "--direct_num_workers=2"].
    The summary is read back from summary_file, which the pipeline writes.
    """
    import apache_beam as beam
    from apache_beam.options.pipeline_options import StandardOptions
    options = pipeline_options(pipeline_args)
    cpd.validate(settings, 0)
    jobs = cpd.plan_jobs(input_files, output_files, settings)
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    start = time.time()
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, jobs, settings, summary_file, start, str(runner))
    state = pipeline.run().wait_until_finish()
    if state != beam.runners.runner.PipelineState.DONE:
        raise RuntimeError(f"the Beam pipeline ended in state {state}")
    with open(summary_file, encoding="utf-8") as f:
        return json.load(f)


# --- Command line -----------------------------------------------------------------------------

FLAGS = flags.FLAGS


def define_flags() -> None:
    create_pretraining_data.define_flags()
    flags.DEFINE_string("beam_pipeline_options", "", "Beam pipeline options, as on a command "
                        "line, e.g. \"--runner=FlinkRunner --flink_master=host:8081\". Options "
                        "after a `--` are added.")


def main(argv):
    try:
        pipeline_args = shlex.split(FLAGS.beam_pipeline_options) + list(argv[1:])
        pipeline_options(pipeline_args)  # unknown options fail before any work
        input_files, output_files, summary_file, settings = create_pretraining_data.from_flags(FLAGS)
        if FLAGS["num_workers"].present:
            logging.info("--num_workers is not used on Beam: the runner's options set the "
                         "parallelism (e.g. --direct_num_workers)")
        summary = run_pipeline(input_files, output_files, settings, summary_file,
                               pipeline_args)
    except (ValueError, ImportError) as e:
        raise app.UsageError(str(e)) from e
    create_pretraining_data.report_outcome(summary, FLAGS.input_file, summary_file)


def run() -> None:
    """Console-script entry point (bert-prep-beam)."""
    define_flags()
    command.run(main, "bert-prep-beam")


if __name__ == "__main__":
    # Run the imported module, not __main__, so that Beam pickles build_shard and
    # write_summary by reference (data_prep.beam_pipeline.*), importable on every worker.
    from data_prep import beam_pipeline
    beam_pipeline.run()
