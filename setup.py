"""Installs bert_tf (models, training, export) and data_prep (tokenizer, TFRecords)."""
from setuptools import find_packages, setup

setup(
    name="bert_tf",
    version="0.1.0",
    description="BERT on TensorFlow 2.21 + Keras 3: pretraining, fine-tuning, conversion, export.",
    python_requires=">=3.10",
    packages=find_packages(include=["bert_tf", "bert_tf.*", "data_prep", "data_prep.*"]),
    package_data={"bert_tf": ["testdata/*"], "data_prep": ["data/*"]},
    install_requires=[
        # TF and TF-Text ship matching C++ ABIs: they must move in lock-step.
        "tensorflow==2.21.*",
        "tensorflow-text==2.21.*",
        "keras>=3.10,<4",
        "absl-py>=2.0",
        "tensorflow-datasets>=4.9",
        # TF 2.21 no longer pulls it in, but tf.summary needs it to write TensorBoard events.
        "tensorboard",
        # Reads Hugging Face .safetensors into numpy without torch.
        "safetensors>=0.4",
        "numpy",
        # Compiles create_pretraining_data's per-instance loops (the original's random draws,
        # Example bytes, TFRecord framing): ~20x less CPU than the same loops in Python and
        # ~4x less than the best numpy formulation (see README.md, "Dependencies").
        "numba>=0.68",
        # Imported directly, though tensorflow or numba bring them too: declared so that a
        # change in what those pull in cannot break an import here.
        "llvmlite",  # data_prep/pretraining/record_kernels.py: the SSE4.2 CRC32C intrinsic for TFRecord framing
        "flatbuffers",  # data_prep/tokenizer/char_tables.py writes tf-text's normalisation tables
        "ml_dtypes",  # bfloat16 checkpoint tensors as numpy arrays
    ],
    extras_require={
        # tests/test_dependencies.py checks that every module imported anywhere in the tree
        # is declared here or above.
        "test": ["pytest>=8", "scipy"],  # scipy: reference Pearson/Spearman in metric tests
        # Peers measured by benchmarks/ in the same run; never needed by the package.
        # (PyTorch + transformers for the optional HF peer are left out: a plain `torch`
        # requirement pulls a multi-GB CUDA build; see benchmarks/README.md.)
        # bert-tensorflow==1.0.4 is google-research/bert's own code (create_pretraining_data.py,
        # tokenization.py), the original that benchmarks/run_original.py runs. Install it with
        # `pip install --no-deps bert-tensorflow==1.0.4`: it requires only six (which the
        # TensorFlow environment has) and its TensorFlow 1.x requirements are optional extras.
        "bench": ["keras-hub==0.32.0", "tokenizers", "bert-tensorflow==1.0.4"],
        # Runs data_prep.create_pretraining_data's shards on a Beam runner (DirectRunner, Flink,
        # Spark, Dataflow): data_prep/beam_pipeline.py. >=2.73: the first releases that take
        # TF 2.21's protobuf 6 and current grpcio; tested with 2.77.0. Beam caps protobuf <7,
        # pyarrow <26 and pillow <13, so installing it may downgrade those (see README.md).
        "beam": ["apache-beam>=2.73"],
        # NVIDIA GPUs: the CUDA 12 / cuDNN 9 wheels (nvidia-*-cu12) that TensorFlow 2.21 was
        # built for, in this environment, so that TensorFlow does not load whatever other CUDA
        # the machine has under the same names. Same pin as tensorflow above.
        # benchmarks/gpu_check.sh reports what was loaded.
        "gpu": ["tensorflow[and-cuda]==2.21.*"],
    },
    entry_points={
        "console_scripts": [
            "bert-convert=bert_tf.convert_checkpoint:run",
            "bert-pretrain=bert_tf.run_pretraining:run",
            "bert-classify=bert_tf.run_classifier:run",
            "bert-tagger=bert_tf.run_tagger:run",
            "bert-squad=bert_tf.run_squad:run",
            "bert-export=bert_tf.export_savedmodel:run",
            "bert-extract-features=bert_tf.extract_features:run",
            "bert-prep=data_prep.create_pretraining_data:run",
            "bert-prep-beam=data_prep.beam_pipeline:run",
            "bert-vocab=data_prep.build_vocab:run",
            "bert-demo=bert_tf.main_job:run",
        ],
    },
)
