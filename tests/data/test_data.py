from __future__ import annotations

import gzip
import hashlib
import io
import sys
import types
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

from bastion.data import DATASETS_HELP, ImageSet, load_dataset
from bastion.data.idx import parse_idx, read_idx
from bastion.errors import InputError

MNIST_MD5 = {
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
FILES = resources.files("bastion.data") / "files"


def toy(n: int = 6, dtype: torch.dtype = torch.uint8, classes: int = 3) -> ImageSet:
    g = torch.Generator().manual_seed(0)
    if dtype == torch.uint8:
        x = torch.randint(0, 256, (n, 3, 4, 5), generator=g, dtype=torch.uint8)
    else:
        x = torch.rand((n, 3, 4, 5), generator=g, dtype=dtype)
    y = torch.arange(n) % classes
    return ImageSet(x, y, [f"c{k}" for k in range(classes)], "toy")


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@pytest.mark.parametrize("name", sorted(MNIST_MD5))
def test_bundled_files_match_published_md5(name: str) -> None:
    assert hashlib.md5((FILES / name).read_bytes()).hexdigest() == MNIST_MD5[name]
    text = (FILES / "LICENSE-MNIST.md").read_text()
    assert MNIST_MD5[name] in text and "LeCun" in text and "Burges" in text and "CC BY-SA 3.0" in text


@pytest.mark.parametrize(
    ("spec", "size", "name"),
    [
        ("mnist-sample", 2000, "mnist-sample:eval"),
        ("mnist-sample:eval", 2000, "mnist-sample:eval"),
        ("mnist-sample:train", 8000, "mnist-sample:train"),
        ("mnist-sample:all", 10000, "mnist-sample:all"),
    ],
)
def test_mnist_sample_splits(spec: str, size: int, name: str) -> None:
    data = load_dataset(spec)
    assert len(data) == size and data.name == name
    assert data.images.dtype == torch.uint8 and data.shape == (1, 28, 28)
    assert data.labels.dtype == torch.int64
    assert data.classes == [str(k) for k in range(10)] and data.num_classes == 10
    assert set(data.labels.tolist()) == set(range(10))


def test_mnist_sample_matches_raw_file() -> None:
    raw_labels = np.frombuffer(
        gzip.decompress((FILES / "t10k-labels-idx1-ubyte.gz").read_bytes()), np.uint8, offset=8
    )
    raw_images = np.frombuffer(
        gzip.decompress((FILES / "t10k-images-idx3-ubyte.gz").read_bytes()), np.uint8, offset=16
    )
    raw_images = raw_images.reshape(10000, 28, 28)
    data = load_dataset("mnist-sample:eval")
    assert int(data.labels[0]) == int(raw_labels[8000]) == 4
    assert torch.equal(data.images[0, 0], torch.from_numpy(raw_images[8000].copy()))
    train = load_dataset("mnist-sample:train")
    assert torch.equal(train.labels, torch.from_numpy(raw_labels[:8000].astype(np.int64)))


def test_mnist_train_and_eval_are_disjoint_halves_of_all() -> None:
    full = load_dataset("mnist-sample:all")
    train, test = load_dataset("mnist-sample:train"), load_dataset("mnist-sample:eval")
    assert torch.equal(torch.cat([train.images, test.images]), full.images)


def test_mnist_sample_unknown_split() -> None:
    with pytest.raises(InputError, match="train, eval, all"):
        load_dataset("mnist-sample:test")


def test_read_idx_round_trip(tmp_path: Path) -> None:
    values = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    raw = bytes([0, 0, 0x0C, 3]) + np.array([2, 3, 4], ">u4").tobytes() + values.astype(">i4").tobytes()
    (tmp_path / "a.idx").write_bytes(raw)
    (tmp_path / "a.idx.gz").write_bytes(gzip.compress(raw))
    for name in ("a.idx", "a.idx.gz"):
        out = read_idx(tmp_path / name)
        assert out.dtype == np.int32 and np.array_equal(out, values) and out.flags.writeable


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\x00\x07\x01\x00\x00\x00\x01\x00",  # unknown type code
        b"\x01\x00\x08\x01\x00\x00\x00\x01\x00",  # bad magic
        b"\x00\x00\x08\x02\x00\x00\x00\x02",  # truncated header
        b"\x00\x00\x08\x01\x00\x00\x00\x03\x00\x01",  # too few values
        b"\x1f\x8b\x08\x00garbage",  # broken gzip stream
    ],
)
def test_corrupt_idx_raises(raw: bytes) -> None:
    with pytest.raises(InputError):
        parse_idx(raw)


def test_read_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="data file not found"):
        read_idx(tmp_path / "nope.gz")


def test_npz_nchw_float(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((5, 3, 8, 8)).astype(np.float32)
    y = np.array([0, 1, 2, 1, 0])
    np.savez(tmp_path / "d.npz", x=x, y=y)
    data = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert data.images.dtype == torch.float32 and data.shape == (3, 8, 8)
    assert torch.equal(data.images, torch.from_numpy(x)) and data.labels.tolist() == y.tolist()
    assert data.classes == ["0", "1", "2"] and data.name == f"npz:{tmp_path / 'd.npz'}"


def test_npz_nhwc_uint8_with_classes(tmp_path: Path) -> None:
    x = np.random.default_rng(1).integers(0, 256, (4, 6, 7, 3), dtype=np.uint8)
    np.savez(
        tmp_path / "d.npz", images=x, labels=np.array([0, 1, 0, 1]), classes=np.array(["cat", "dog", "owl"])
    )
    data = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert data.images.dtype == torch.uint8 and data.shape == (3, 6, 7)
    assert torch.equal(data.images, torch.from_numpy(x).permute(0, 3, 1, 2))
    assert data.classes == ["cat", "dog", "owl"] and data.num_classes == 3


def test_npz_nhw_grayscale_and_bare_path(tmp_path: Path) -> None:
    x = np.random.default_rng(2).integers(0, 256, (3, 9, 9), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", data=x, targets=np.array([[2], [0], [1]]))
    data = load_dataset(str(tmp_path / "d.npz"))
    assert data.shape == (1, 9, 9) and torch.equal(data.images[:, 0], torch.from_numpy(x))
    assert data.labels.tolist() == [2, 0, 1]


@pytest.mark.parametrize(
    ("write", "match"),
    [
        (lambda p: np.savez(p, pixels=np.zeros((2, 1, 2, 2)), y=np.zeros(2, int)), "keys present: pixels, y"),
        (lambda p: p.write_bytes(b"not a zip file"), "not a valid .npz archive of arrays"),
        (lambda p: p.write_bytes(npy_bytes(np.zeros(3))), "not a .npz archive"),
        (lambda p: np.savez(p, x=np.zeros((1, 1, 2, 2)), y=[0], classes=np.array([{}])), "array of Python objects"),
    ],
)
def test_bad_npz_files_raise(tmp_path: Path, write, match: str) -> None:
    path = tmp_path / "d.npz"
    write(path)
    with pytest.raises(InputError, match=match):
        load_dataset(f"npz:{path}")


def test_pt_dict_and_tuple(tmp_path: Path) -> None:
    x = torch.rand(4, 1, 5, 5)
    y = torch.tensor([1, 0, 1, 0])
    torch.save({"images": x, "targets": y, "classes": ["no", "yes"]}, tmp_path / "d.pt")
    torch.save((x, y), tmp_path / "t.pt")
    from_dict = load_dataset(f"pt:{tmp_path / 'd.pt'}")
    from_tuple = load_dataset(f"pt:{tmp_path / 't.pt'}")
    assert from_dict.classes == ["no", "yes"] and from_tuple.classes == ["0", "1"]
    for data in (from_dict, from_tuple):
        assert torch.equal(data.images, x) and torch.equal(data.labels, y)
    assert from_dict.fingerprint == from_tuple.fingerprint


def test_pt_integer_images_in_range_become_uint8(tmp_path: Path) -> None:
    torch.save(
        {"x": torch.tensor([[[0, 255]]]).repeat(2, 1, 1), "y": torch.tensor([0, 0])}, tmp_path / "d.pt"
    )
    data = load_dataset(f"pt:{tmp_path / 'd.pt'}")
    assert data.images.dtype == torch.uint8 and data.shape == (1, 1, 2)


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (np.full((2, 1, 3, 3), -0.42, np.float32), r"\[0, 1\] \(got min -0.42"),
        (np.full((2, 1, 3, 3), 2.6, np.float32), "max 2.6"),
        (np.full((2, 1, 3, 3), np.nan, np.float32), "NaN"),
        (np.full((2, 1, 3, 3), 300, np.int64), "0-255"),
        (np.zeros((2, 3), np.float32), "shape"),
    ],
)
def test_bad_pixels_raise(tmp_path: Path, x: np.ndarray, match: str) -> None:
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1]))
    with pytest.raises(InputError, match=match):
        load_dataset(f"npz:{tmp_path / 'd.npz'}")


def test_mismatched_label_count_raises(tmp_path: Path) -> None:
    torch.save((torch.rand(3, 1, 2, 2), torch.tensor([0, 1])), tmp_path / "d.pt")
    with pytest.raises(InputError, match="one label per image"):
        load_dataset(f"pt:{tmp_path / 'd.pt'}")


def test_labels_outside_classes_raise() -> None:
    with pytest.raises(InputError, match=r"labels must lie in \[0, 2\)"):
        ImageSet(torch.zeros(2, 1, 2, 2), torch.tensor([0, 2]), ["a", "b"], "x")
    with pytest.raises(InputError, match="integer class indices"):
        ImageSet.from_arrays(np.zeros((2, 1, 2, 2)), np.array([0.5, 1.0]))


@pytest.mark.parametrize(
    "spec", ["npz:", "npz:/no/such/file.npz", "pt:/no/such/file.pt", "/no/such/file.npz"]
)
def test_missing_file_raises(spec: str) -> None:
    with pytest.raises(InputError, match="not found|needs a path"):
        load_dataset(spec)


def test_unknown_prefix_lists_valid_forms() -> None:
    with pytest.raises(InputError, match="valid forms: mnist-sample") as info:
        load_dataset("imagenet-lite:val")
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="train, test"):
        load_dataset("cifar10:validation")


def test_select_first_and_seeded() -> None:
    data = load_dataset("mnist-sample:eval")
    first = load_dataset("mnist-sample", limit=10)
    assert torch.equal(first.images, data.images[:10])
    a = load_dataset("mnist-sample", limit=50, seed=1)
    b = load_dataset("mnist-sample", limit=50, seed=1)
    c = load_dataset("mnist-sample", limit=50, seed=2)
    assert a.fingerprint == b.fingerprint and a.fingerprint != c.fingerprint
    assert len(a) == 50 and a.fingerprint != first.fingerprint
    assert data.select(None, seed=3) is data and len(data.select(len(data), seed=3)) == len(data)


@pytest.mark.parametrize("limit", [0, -1, 2001])
def test_bad_limit_raises(limit: int) -> None:
    with pytest.raises(InputError, match="limit"):
        load_dataset("mnist-sample", limit=limit)


def test_subset_checks_indices() -> None:
    data = toy()
    assert data.subset([5, 0, 5]).labels.tolist() == [2, 0, 2]
    with pytest.raises(InputError, match="must lie in"):
        data.subset([6])


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float64])
def test_batches_cover_every_index_once(dtype: torch.dtype) -> None:
    data = toy(n=10, dtype=dtype)
    seen = []
    for indices, x, y in data.batches(4):
        assert x.dtype == torch.float32 and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
        assert torch.equal(y, data.labels[indices]) and len(x) == len(indices) <= 4
        seen.extend(indices.tolist())
    assert seen == list(range(10))
    with pytest.raises(InputError, match="batch_size"):
        next(data.batches(0))


def test_batch_scales_and_does_not_alias() -> None:
    data = toy(n=4, dtype=torch.float32)
    x, _ = data.batch(slice(0, 2), dtype=torch.float64)
    assert x.dtype == torch.float64
    x.zero_()
    assert float(data.images[:2].sum()) > 0
    u = toy(n=4)
    xu, yu = u.batch(torch.tensor([3, 1]))
    assert torch.allclose(xu, u.images[[3, 1]].float() / 255) and yu.tolist() == u.labels[[3, 1]].tolist()


def test_fingerprint_stable_and_sensitive() -> None:
    a, b = toy(), toy()
    assert a.fingerprint == b.fingerprint and len(a.fingerprint) == 16
    images = a.images.clone()
    images[0, 0, 0, 0] ^= 1
    assert ImageSet(images, a.labels, a.classes, "toy").fingerprint != a.fingerprint
    labels = a.labels.clone()
    labels[0] = (labels[0] + 1) % 3
    assert ImageSet(a.images, labels, a.classes, "toy").fingerprint != a.fingerprint


@pytest.mark.parametrize(
    "spec", ["mnist", "fashion-mnist:train", "cifar10:test", "cifar100", "torchvision:SVHN:test"]
)
def test_torchvision_specs_need_torchvision(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, spec: str
) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(InputError, match=r"needs torchvision: pip install 'bastion\[vision\]'"):
        load_dataset(spec, root=tmp_path, download=False)


def test_imagefolder_needs_torchvision(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(InputError, match="needs torchvision"):
        load_dataset(f"imagefolder:{tmp_path}:32")
    with pytest.raises(InputError, match="data folder not found"):
        load_dataset(f"imagefolder:{tmp_path / 'missing'}")


def fake_torchvision(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand-ins with the attributes bastion reads from real torchvision datasets (not installed here)."""

    class MNIST:  # uint8 (N, H, W) tensor in .data, a train flag
        classes = ["0 - zero", "1 - one"]

        def __init__(self, root, train=True, transform=None, download=False):
            self.data = torch.full((3 if train else 2, 28, 28), 7, dtype=torch.uint8)
            self.targets = torch.tensor([0, 1, 1][: len(self.data)])

    class CIFAR10(MNIST):  # (N, H, W, C) numpy array, list of targets
        def __init__(self, root, train=True, transform=None, download=False):
            self.data, self.targets, self.classes = np.zeros((2, 8, 8, 3), np.uint8), [1, 0], ["a", "b"]

    class SVHN:  # (N, C, H, W) numpy array in .data, .labels, a split name
        def __init__(self, root, split="train", transform=None, download=False):
            self.data, self.labels = np.zeros((2, 3, 8, 8), np.uint8), np.array([3, 1])
            self.split = split

    class ImageFolder:  # decoded one sample at a time through the transform
        classes = ["x", "y"]

        def __init__(self, root, transform=None):
            self.transform = transform

        def __len__(self):
            return 2

        def __getitem__(self, i):
            return self.transform(i), i

    datasets = types.ModuleType("torchvision.datasets")
    for cls in (MNIST, CIFAR10, SVHN, ImageFolder):
        setattr(datasets, cls.__name__, cls)
    transforms = types.ModuleType("torchvision.transforms")
    transforms.PILToTensor = lambda: lambda i: torch.full((3, 4, 4), i, dtype=torch.uint8)
    transforms.Resize = transforms.CenterCrop = lambda size: None
    transforms.Compose = lambda steps: steps[-1]
    package = types.ModuleType("torchvision")
    package.datasets, package.transforms = datasets, transforms
    for name, module in (("", package), (".datasets", datasets), (".transforms", transforms)):
        monkeypatch.setitem(sys.modules, "torchvision" + name, module)


def test_torchvision_conversions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_torchvision(monkeypatch)
    mnist = load_dataset("mnist", root=tmp_path)
    assert (mnist.name, len(mnist), mnist.shape) == ("mnist:test", 2, (1, 28, 28))
    assert mnist.classes == ["0 - zero", "1 - one"]
    assert len(load_dataset("mnist:train", root=tmp_path, limit=3)) == 3
    cifar = load_dataset("cifar10:train", root=tmp_path)
    assert (cifar.shape, cifar.labels.tolist(), cifar.classes) == ((3, 8, 8), [1, 0], ["a", "b"])
    svhn = load_dataset("torchvision:svhn:test", root=tmp_path)
    assert (svhn.name, svhn.shape, svhn.num_classes) == ("torchvision:SVHN:test", (3, 8, 8), 4)
    folder = load_dataset(f"imagefolder:{tmp_path}:4")
    assert folder.name == f"imagefolder:{tmp_path}:4" and folder.labels.tolist() == [0, 1]
    assert folder.images.dtype == torch.uint8 and int(folder.images[1].min()) == 1
    with pytest.raises(InputError, match="unknown torchvision dataset"):
        load_dataset("torchvision:NoSuchSet", root=tmp_path)


def test_help_lists_every_form() -> None:
    text = "\n".join(DATASETS_HELP)
    for form in ("mnist-sample", "npz:PATH", "pt:PATH", "imagefolder:PATH", "torchvision:NAME", "cifar100"):
        assert form in text
