"""decode_infer's value checks: one pass for min and max, the same answers as checking every value."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bastion.serve.payloads import RequestError, decode_infer


def body(data: list, datatype: str = "UINT8") -> bytes:
    import json

    return json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 2, 2], "datatype": datatype,
                                   "data": data}]}).encode()


@pytest.mark.parametrize(("data", "datatype", "reason"), [
    ([0, 255, 256, 3], "UINT8", "0-255"),
    ([0, -1, 2, 3], "UINT8", "0-255"),
    ([0.0, 3.5, 2.0, 1.0], "UINT8", "whole numbers"),
    ([0.0, 0.5, 1.5, 1.0], "FP32", "[0, 1]"),
    ([0.0, -0.5, 0.5, 1.0], "FP64", "[0, 1]"),
    ([0.0, 1e400, 0.5, 1.0], "FP32", "NaN or infinite"),
    ([1, 2, 3], "UINT8", "needs 4"),
])
def test_bad_values_are_refused_with_their_reason(data: list, datatype: str, reason: str) -> None:
    with pytest.raises(RequestError, match=reason.replace("[", r"\[").replace("]", r"\]")) as error:
        decode_infer(body(data, datatype), (1, 2, 2), 8)
    assert error.value.status == 422


def test_good_values_decode_as_float32_in_unit_range() -> None:
    _, x = decode_infer(body([0, 255, 128, 7]), (1, 2, 2), 8)
    expected = (np.array([0, 255, 128, 7], dtype=np.float64) / 255.0).astype(np.float32).reshape(1, 1, 2, 2)
    assert x.dtype == torch.float32 and torch.equal(x, torch.from_numpy(expected))
    _, x = decode_infer(body([0, 1, 1, 0], "FP32"), (1, 2, 2), 8)  # whole numbers are valid FP32 pixels
    assert x.flatten().tolist() == [0.0, 1.0, 1.0, 0.0]
    _, x = decode_infer(body([0.0, 3.0, 255.0, 1.0]), (1, 2, 2), 8)  # UINT8 sent as whole floats
    assert x.flatten().tolist() == pytest.approx([0.0, 3 / 255, 1.0, 1 / 255])
