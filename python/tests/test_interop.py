"""faiss_gmm beside PyPI's faiss in one process, in either import order, and
means_ handed to a faiss IVF index as its coarse centroids.

Each scenario runs in a fresh interpreter (subprocess), since the import
order only matters for the first import of each module.
"""

import shutil
import subprocess
import sys
import textwrap

import pytest

import faiss_gmm

pytest.importorskip("faiss")

# Both libraries used in the same process: a FAISS k-means IVF from the
# faiss package, an IVF-GMM index from faiss_gmm, and a faiss IVF whose
# coarse centroids are a faiss_gmm GaussianMixture's means_.
SCENARIO = """
import numpy as np
rng = np.random.default_rng(0)
centers = rng.normal(0, 4, (16, 24))
x = (centers[rng.integers(0, 16, 6000)] + rng.standard_normal((6000, 24))).astype("float32")
base, queries = x[:5000], x[5000:]

# stock FAISS from the faiss package
ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(24), 24, 16)
ivf.train(base)
ivf.add(base)
ivf.nprobe = 16
d_faiss, i_faiss = ivf.search(queries, 5)

# the GMM index from faiss_gmm
idx = faiss_gmm.index_factory(24, "IVF16_GMM,Flat")
idx.train(base)
idx.add(base)
d_gmm, i_gmm = idx.search(queries, 5, nprobe=16, prune_margin=0)
assert (i_faiss == i_gmm).mean() > 0.999, "exact searches disagree"

# train a GMM here, hand its means to a faiss IVF as coarse centroids
gmm = faiss_gmm.GaussianMixture(16, covariance_type="spherical", random_state=0).fit(base)
quantizer = faiss.IndexFlatL2(24)
quantizer.add(gmm.means_)
ivf_gmm = faiss.IndexIVFFlat(quantizer, 24, 16)
ivf_gmm.is_trained = True  # the quantizer holds the centroids: no k-means
ivf_gmm.add(base)
_, lists = quantizer.search(base, 1)
np.testing.assert_array_equal(
    np.bincount(lists[:, 0], minlength=16),
    [ivf_gmm.invlists.list_size(l) for l in range(16)])
ivf_gmm.nprobe = 16
_, i_ivf_gmm = ivf_gmm.search(queries, 5)
assert (i_ivf_gmm == i_faiss).mean() > 0.999
print("OK", faiss.__version__, faiss_gmm.faiss_version)
"""


def run_python(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.parametrize(
    "imports",
    ["import faiss\nimport faiss_gmm", "import faiss_gmm\nimport faiss"],
    ids=["faiss-first", "faiss_gmm-first"],
)
def test_both_in_one_process(imports):
    out = run_python(imports + "\n" + SCENARIO)
    assert out.startswith("OK ")


def test_module_exports_no_faiss_symbols():
    """The module's dynamic symbol table holds no FAISS / faiss_gmm
    symbol: it can neither interpose on faiss's nor bind to them."""
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm (binutils) not installed")
    lib = faiss_gmm._faiss_gmm.__file__
    out = subprocess.run(
        [nm, "-D", "--defined-only", "-C", lib], capture_output=True, text=True, check=True
    ).stdout
    exported = [
        line for line in out.splitlines() if "faiss" in line and "PyInit__faiss_gmm" not in line
    ]
    assert exported == []
    assert "PyInit__faiss_gmm" in out
