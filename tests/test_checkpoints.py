"""Safe checkpoint loading: containers, prefixes, hashes, clear mismatch errors, ADM preset hints."""
from __future__ import annotations

import hashlib
import pickle

import pytest
import torch
from torch import nn

from monai_dmilo.priors.checkpoints import guess_adm_preset, load_into, load_state_dict, sha256_of
from monai_dmilo.networks import ADMUNet


def small_net(width: int = 4) -> nn.Module:
    torch.manual_seed(width)
    return nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.SiLU(), nn.Conv2d(width, 1, 3, padding=1))


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"state_dict": sd, "epoch": 3},
        lambda sd: {"model": sd, "optimizer": {"lr": 0.1}},
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
        lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
    ],
    ids=["plain", "state_dict", "model", "module_prefix", "nested_prefix"],
)
def test_load_state_dict_unwraps_containers(tmp_path, wrap):
    src = small_net()
    path = tmp_path / "w.pt"
    torch.save(wrap(src.state_dict()), path)
    state = load_state_dict(path)
    assert set(state) == set(src.state_dict())
    dst = small_net(4)
    with torch.no_grad():
        for p in dst.parameters():
            p.zero_()
    load_into(dst, path)
    assert_same_weights(dst, src)


def test_ema_weights_are_preferred_in_training_checkpoints(tmp_path):
    raw, ema = small_net(4), small_net(4)
    with torch.no_grad():
        for p in ema.parameters():
            p.add_(1.0)
    path = tmp_path / "checkpoint_final.pt"
    torch.save({"network": raw.state_dict(), "ema_network": ema.state_dict(), "trainer": {"epoch": 2}}, path)
    assert_same_weights(load_into(small_net(4), path), ema)


def test_sha256_verification(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(small_net().state_dict(), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert sha256_of(path) == digest
    assert set(load_state_dict(path, sha256=digest.upper())) == set(small_net().state_dict())
    # Tamper with one byte of the file: the digest no longer matches.
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match the expected sha256") as err:
        load_state_dict(path, sha256=digest)
    assert "corrupt" not in str(err.value)
    assert str(path) in str(err.value) and digest in str(err.value)
    with pytest.raises(ValueError, match="64-character"):
        load_state_dict(path, sha256="abc")


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "model.pt"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_state_dict(missing)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_into(small_net(), missing)


def test_untrusted_pickle_is_refused(tmp_path, capsys):
    class Payload:
        def __reduce__(self):
            return (print, ("code ran",))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"weight": Payload()}, f, protocol=2)
    # refused as a one-line user error (never torch's advice to set weights_only=False), code not run
    with pytest.raises(ValueError, match="weights-only|not a PyTorch checkpoint") as err:
        load_state_dict(path)
    assert "weights_only=False" not in str(err.value) and str(path) in str(err.value)
    assert "code ran" not in capsys.readouterr().out


def test_non_state_dict_content_is_explained(tmp_path):
    path = tmp_path / "odd.pt"
    torch.save({"epoch": 3, "notes": "hello"}, path)
    with pytest.raises(ValueError, match="container keys"):
        load_state_dict(path)
    torch.save([1, 2, 3], path)
    with pytest.raises(ValueError, match="does not contain a state dict"):
        load_state_dict(path)


def test_wrong_architecture_lists_keys_and_shapes(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(small_net(8).state_dict(), path)
    target = small_net(4)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ValueError, match="shape mismatches") as err:
        load_into(target, path)
    msg = str(err.value)
    assert "0.weight" in msg and "(8, 1, 3, 3)" in msg and "(4, 1, 3, 3)" in msg
    # Nothing was loaded.
    for k, v in target.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)

    extra = dict(small_net(4).state_dict())
    extra["3.weight"] = torch.zeros(1)
    del extra["2.bias"]
    with pytest.raises(ValueError) as err:
        load_into(small_net(4), extra)
    assert "1 missing keys (2.bias)" in str(err.value) and "1 unexpected keys (3.weight)" in str(err.value)
    # Non-strict loading accepts disjoint keys but never a shape mismatch.
    load_into(small_net(4), extra, strict=False)
    with pytest.raises(ValueError, match="shape mismatches"):
        load_into(small_net(4), small_net(8).state_dict(), strict=False)


def test_many_missing_keys_are_counted_not_all_listed():
    big = nn.Sequential(*[nn.Linear(2, 2) for _ in range(10)])
    with pytest.raises(ValueError) as err:
        load_into(big, {"0.weight": torch.zeros(2, 2), "0.bias": torch.zeros(2)})
    msg = str(err.value)
    assert "18 missing keys" in msg and "..." in msg and "9.bias" not in msg


def tiny_adm() -> ADMUNet:
    return ADMUNet(
        image_size=16, model_channels=16, out_channels=6, num_res_blocks=1, attention_resolutions=(8,),
        channel_mult=(1, 2), num_head_channels=8, norm_num_groups=8,
    )


def test_adm_checkpoint_mismatch_names_the_fitting_preset():
    # An imagenet256_uncond-shaped state dict offered to an ffhq_10m network.
    state = dict(ADMUNet.from_preset("imagenet256_uncond", device="meta").state_dict())  # meta: no memory
    names, score = guess_adm_preset(state)
    assert names == ["imagenet256_uncond", "lsun_bedroom"] and score == 1.0
    ffhq = ADMUNet.from_preset("ffhq_10m", device="meta")
    with pytest.raises(ValueError) as err:
        load_into(ffhq, state)
    msg = str(err.value)
    assert "imagenet256_uncond / lsun_bedroom matches exactly" in msg
    assert "ADMUNet.from_preset('imagenet256_uncond')" in msg
    assert "missing keys" in msg and "unexpected keys" in msg and "shape mismatches" in msg


def test_adm_partial_checkpoint_gets_best_guess():
    state = dict(ADMUNet.from_preset("ffhq_10m", device="meta").state_dict())
    state.pop("out.2.weight")
    names, score = guess_adm_preset(state)
    assert names == ["celebahq_p2", "ffhq_10m"] and 0.9 < score < 1.0
    with pytest.raises(ValueError, match="fits best"):
        load_into(tiny_adm(), state)


def test_tiny_adm_round_trip(tmp_path):
    src = tiny_adm()
    with torch.no_grad():
        for p in src.parameters():
            p.normal_(0, 0.1)
    path = tmp_path / "adm.pt"
    torch.save({"model": src.state_dict()}, path)
    dst = load_into(tiny_adm(), path, sha256=sha256_of(path))
    x, t = torch.randn(1, 3, 16, 16), torch.tensor([7])
    torch.testing.assert_close(dst(x, t), src(x, t), rtol=0, atol=0)


def test_bad_arguments():
    with pytest.raises(TypeError, match="network"):
        load_into("not a module", {})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="state_dict_or_path"):
        load_into(small_net(), 42)  # type: ignore[arg-type]
