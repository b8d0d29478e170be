"""TensorFlow, imported on first use: reading the registry (names, shapes, weights, costs) needs no TensorFlow, so
commands that only read programs start in a fraction of a second. The first attribute access loads it;
`load_quietly` loads it without its start-up noise."""

import importlib.util
import os
import re
import sys
import tempfile


def _lazy(name: str):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


tf = _lazy("tensorflow")


# What TensorFlow prints on stderr while it starts, whatever TF_CPP_MIN_LOG_LEVEL says: not warnings about the run.
_STARTUP_NOISE = re.compile(r"absl::InitializeLog|cudart_stub\.cc|cpu_feature_guard\.cc|To enable the following "
                            r"instructions|cuda_platform\.cc:\d+\] failed call to cuInit|Unable to register "
                            r"cu(DNN|FFT|BLAS) factory|computation placer already registered|oneDNN custom "
                            r"operations are on")


def load_quietly() -> None:
    """Load TensorFlow and its devices now, keeping its start-up lines (`_STARTUP_NOISE`) off stderr; any other
    line it prints meanwhile is passed on."""
    if type(tf).__name__ != "_LazyModule" and "tensorflow.python" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)          # the C++ logging writes to file descriptor 2 directly
        try:
            tf.config.list_physical_devices()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        kept = [line for line in captured.read().decode(errors="replace").splitlines()
                if line.strip() and not _STARTUP_NOISE.search(line)]
    if kept:
        print("\n".join(kept), file=sys.stderr)
