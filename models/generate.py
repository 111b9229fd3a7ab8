"""Generate the ONNX models and golden data used by bluegreen's tests, examples and benches.

What it makes (all under models/digits/, all from scikit-learn's BUNDLED handwritten digits
dataset, `sklearn.datasets.load_digits`, 1797 x 64, raw pixel values 0..16, no download):

  1/model.onnx  v1, weak:      LogisticRegression(max_iter=3)              -> ~0.90 held-out
  2/model.onnx  v2, good:      MLPClassifier(hidden_layer_sizes=(64,))     -> ~0.97 held-out
  3/model.onnx  v3, degraded:  same as v2 but trained on SHUFFLED labels   -> ~chance
  4/model.onnx  v4, incompatible schema: input `pixels` [batch, 32] (8x8 image with pairs of
                adjacent columns averaged -> 8 rows x 4 columns, row-major)
  5/model.onnx  corrupt: first half (len // 2 bytes) of 2/model.onnx; must fail to load
  6/model.onnx  v6, slow:      KNeighborsClassifier(n_neighbors=3)         -> ~0.99 held-out,
                but every call scans all 1347 training digits (an ONNX `Scan`): it passes
                every gate and is far slower per call than v2 (what a bake window's latency
                limit is for; scripts/loadtest.sh uses it). Not in golden.npz.
  golden.npz    held-out inputs, true labels, and onnxruntime's outputs for v1..v4
  MANIFEST.md   table of versions, held-out accuracy (measured with onnxruntime), sizes, sha256

Interface of v1, v2, v3, v6 (identical):
  input  `input`         float32 [batch, 64]   (raw pixels 0..16, row-major 8x8, no scaling)
  output `label`         int64   [batch]
  output `probabilities` float32 [batch, 10]
v4: input `pixels` float32 [batch, 32]; same outputs.
metadata_props: feature_schema (`digits-8x8-f32` | `digits-4x8-f32`), model_version ("1".."4"),
task (`digits`), plus description/converter. ModelProto.model_version = 1..4.

golden.npz is an UNCOMPRESSED npz (zip, stored entries, like `np.savez`), written with fixed zip
timestamps so it is byte-identical on every run. `np.load` reads it. Arrays (C order, little
endian): inputs f32[N,64], inputs_4x8 f32[N,32], labels i64[N], label_vK i64[N],
probabilities_vK f32[N,10] for K in 1..4, N = 450 (stratified 25% split, random_state=0).
Reference outputs come from Python onnxruntime (CPU, 1 intra-op thread, default graph
optimizations); compare probabilities with a small tolerance (~1e-5) from other runtimes/configs.

How to run (from the repository root; keep the venv outside the repo if you prefer):
    python3 -m venv .venv && .venv/bin/pip install -r models/requirements.txt \
        && .venv/bin/python models/generate.py
Running it twice produces byte-identical files on one machine. Another machine's BLAS can train
v1..v4 slightly differently (seen 2026-12-02: v3 at 0.1000 instead of 0.0978, other bytes), so
v6 was added by running this script and keeping only 6/model.onnx and its MANIFEST row; v6
involves no training randomness (a k-nearest-neighbours index is the training set).
"""

import os

# Single-threaded BLAS/OpenMP so training and inference are bit-reproducible.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import hashlib  # noqa: E402
import io  # noqa: E402
import warnings  # noqa: E402
import zipfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import skl2onnx  # noqa: E402
import sklearn  # noqa: E402
from skl2onnx import to_onnx  # noqa: E402
from skl2onnx.common.data_types import FloatTensorType  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402

SEED = 0
OUT = Path(__file__).resolve().parent / "digits"
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)

warnings.filterwarnings("ignore", category=ConvergenceWarning)


def pool_4x8(x: np.ndarray) -> np.ndarray:
    """[N, 64] 8x8 images -> [N, 32]: average each pair of adjacent columns (8 rows x 4 cols)."""
    x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, 8, 4, 2)
    return ((x[..., 0] + x[..., 1]) * np.float32(0.5)).reshape(-1, 32).astype(np.float32)


def export(clf, version: int, input_name: str, width: int, schema: str, description: str) -> bytes:
    model = to_onnx(
        clf,
        initial_types=[(input_name, FloatTensorType([None, width]))],
        options={id(clf): {"zipmap": False}},
        target_opset=TARGET_OPSET,
    )
    # skl2onnx may list the default domain twice; keep one entry per domain.
    seen = {}
    for op in model.opset_import:
        seen[op.domain] = max(seen.get(op.domain, 0), op.version)
    del model.opset_import[:]
    for domain, ver in sorted(seen.items()):
        model.opset_import.add(domain=domain, version=ver)
    # Name the dynamic batch dimension; pin stable top-level fields.
    for vi in list(model.graph.input) + list(model.graph.output):
        vi.type.tensor_type.shape.dim[0].dim_param = "batch"
    model.producer_name = "bluegreen/models/generate.py"
    model.producer_version = "1"
    model.domain = "bluegreen.digits"
    model.model_version = version
    model.doc_string = description
    model.graph.name = f"digits_v{version}"
    del model.metadata_props[:]
    meta = {
        "feature_schema": schema,
        "model_version": str(version),
        "task": "digits",
        "description": description,
        "converter": f"skl2onnx {skl2onnx.__version__}, scikit-learn {sklearn.__version__}",
    }
    onnx.helper.set_model_props(model, meta)
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString(deterministic=True)


def session(data: bytes) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(data, sess_options=so, providers=["CPUExecutionProvider"])


def run(data: bytes, x: np.ndarray):
    sess = session(data)
    label, proba = sess.run(["label", "probabilities"], {sess.get_inputs()[0].name: x})
    return np.asarray(label, dtype=np.int64), np.asarray(proba, dtype=np.float32)


def write_npz(path: Path, arrays: dict) -> None:
    """Deterministic uncompressed .npz (what np.savez writes, minus the wall-clock timestamps)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, arr in arrays.items():
            npy = io.BytesIO()
            np.lib.format.write_array(npy, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            info.create_system = 3
            zf.writestr(info, npy.getvalue())
    path.write_bytes(buf.getvalue())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main() -> None:
    digits = load_digits()
    x_all = digits.data.astype(np.float32)
    y_all = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x_all, y_all, test_size=0.25, stratify=y_all, random_state=SEED
    )
    x_tr4, x_te4 = pool_4x8(x_tr), pool_4x8(x_te)
    y_shuffled = np.random.default_rng(SEED).permutation(y_tr)

    def mlp():
        return MLPClassifier(hidden_layer_sizes=(64,), max_iter=500, random_state=SEED)

    specs = [
        # version, classifier, train X, train y, input name, width, schema, description
        (1, LogisticRegression(max_iter=3), x_tr, y_tr, "input", 64, "digits-8x8-f32",
         "v1 (weak): LogisticRegression(max_iter=3) on raw pixels"),
        (2, mlp(), x_tr, y_tr, "input", 64, "digits-8x8-f32",
         "v2 (good): MLPClassifier(hidden_layer_sizes=(64,)) on raw pixels"),
        (3, mlp(), x_tr, y_shuffled, "input", 64, "digits-8x8-f32",
         "v3 (degraded): same as v2 but trained on shuffled labels"),
        (4, mlp(), x_tr4, y_tr, "pixels", 32, "digits-4x8-f32",
         "v4 (incompatible schema): MLPClassifier(64,) on 8x4 column-pair-averaged pixels"),
    ]

    golden = {"inputs": x_te, "inputs_4x8": x_te4, "labels": y_te}
    rows = []
    model_bytes = {}
    for version, clf, xt, yt, in_name, width, schema, desc in specs:
        clf.fit(xt, yt)
        data = export(clf, version, in_name, width, schema, desc)
        x_eval = x_te4 if width == 32 else x_te
        label, proba = run(data, x_eval)
        # The ONNX graph must agree with scikit-learn itself.
        np.testing.assert_allclose(proba, clf.predict_proba(x_eval), rtol=0, atol=1e-4)
        assert label.shape == (len(x_eval),) and proba.shape == (len(x_eval), 10)
        golden[f"label_v{version}"] = label
        golden[f"probabilities_v{version}"] = proba
        acc = float((label == y_te).mean())
        model_bytes[version] = data
        rows.append((version, desc, f"{acc:.4f}", in_name, width, schema, data))

    accs = {r[0]: float(r[2]) for r in rows}
    assert accs[2] > accs[1] > accs[3], accs
    assert accs[2] >= 0.95 and accs[1] < accs[2] - 0.03 and accs[3] < 0.3, accs

    corrupt = model_bytes[2][: len(model_bytes[2]) // 2]
    try:
        session(corrupt)
    except Exception:  # noqa: BLE001 - any load failure is what we want
        pass
    else:
        raise AssertionError("truncated model unexpectedly loaded")
    rows.append((5, "corrupt: first half (len // 2 bytes) of 2/model.onnx", "n/a (fails to load)",
                 "-", "-", "-", corrupt))

    # v6 came later: golden.npz keeps the outputs of v1..v4 only, so it stays as it was.
    desc6 = ("v6 (slow): KNeighborsClassifier(n_neighbors=3) on raw pixels; every call scans"
             " all training digits")
    slow = KNeighborsClassifier(n_neighbors=3).fit(x_tr, y_tr)
    data6 = export(slow, 6, "input", 64, "digits-8x8-f32", desc6)
    label6, proba6 = run(data6, x_te)
    np.testing.assert_allclose(proba6, slow.predict_proba(x_te), rtol=0, atol=1e-4)
    acc6 = float((label6 == y_te).mean())
    assert acc6 >= accs[2], (acc6, accs)
    rows.append((6, desc6, f"{acc6:.4f}", "input", 64, "digits-8x8-f32", data6))

    for version, *_rest, data in rows:
        d = OUT / str(version)
        d.mkdir(parents=True, exist_ok=True)
        (d / "model.onnx").write_bytes(data)
    golden_path = OUT / "golden.npz"
    write_npz(golden_path, golden)
    golden_bytes = golden_path.read_bytes()

    lines = [
        "# digits models (generated by `models/generate.py` — do not edit by hand)",
        "",
        f"Data: scikit-learn {sklearn.__version__} bundled `load_digits` (1797 x 64, pixels 0..16),"
        f" stratified split test_size=0.25, random_state={SEED} -> {len(x_tr)} train /"
        f" {len(x_te)} held-out. Converted with skl2onnx {skl2onnx.__version__}"
        f" (opset {TARGET_OPSET['']}, zipmap off); accuracy measured with onnxruntime"
        f" {ort.__version__} on `golden.npz` `inputs` (v4: `inputs_4x8`).",
        "",
        "Outputs of every real model: `label` int64 [batch], `probabilities` float32 [batch, 10].",
        "",
        "| version | what | held-out accuracy | input | feature_schema | bytes | sha256 |",
        "|---|---|---|---|---|---|---|",
    ]
    for version, desc, acc, in_name, width, schema, data in rows:
        sig = f"`{in_name}` f32 [batch, {width}]" if width != "-" else "-"
        sch = f"`{schema}`" if schema != "-" else "-"
        lines.append(f"| {version} | {desc} | {acc} | {sig} | {sch} | {len(data)} | `{sha256(data)}` |")
    lines += [
        "",
        f"`golden.npz` (uncompressed npz, {len(golden_bytes)} bytes, sha256 `{sha256(golden_bytes)}`):",
        "",
        "| array | dtype | shape |",
        "|---|---|---|",
    ]
    for name, arr in golden.items():
        lines.append(f"| `{name}` | {arr.dtype} | {list(arr.shape)} |")
    lines.append("")
    (OUT / "MANIFEST.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
