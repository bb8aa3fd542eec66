import torch
from conftest import tiny_config
from transformers import ResNetForImageClassification

from hf_resnet.model.memory_format import channels_last_is_safe, use_channels_last

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_real_layouts_go_channels_last_and_toy_ones_stay_nchw_on_cpu():
    toy = ResNetForImageClassification(tiny_config())  # 8-channel 1x1 stride-2 shortcuts
    wide = ResNetForImageClassification(tiny_config(embedding_size=16, hidden_sizes=[16, 16, 24, 32]))
    assert not channels_last_is_safe(toy, CPU) and channels_last_is_safe(toy, CUDA)
    assert not use_channels_last(toy, CPU)
    assert toy.resnet.embedder.embedder.convolution.weight.is_contiguous()
    assert use_channels_last(wide, CPU)
    assert all(
        module.weight.is_contiguous(memory_format=torch.channels_last)
        for module in wide.modules()
        if isinstance(module, torch.nn.Conv2d)
    )


def test_channels_last_training_steps_match_nchw():
    torch.manual_seed(0)
    nchw = ResNetForImageClassification(tiny_config(embedding_size=16, hidden_sizes=[16, 16, 24, 32]))
    nhwc = ResNetForImageClassification(nchw.config)
    nhwc.load_state_dict(nchw.state_dict())
    use_channels_last(nhwc, CPU)
    pixels = torch.randn(4, 3, 32, 32)
    losses = []
    for model, layout in ((nchw, torch.contiguous_format), (nhwc, torch.channels_last)):
        loss = model(pixel_values=pixels.contiguous(memory_format=layout), labels=torch.tensor([0, 1, 2, 0])).loss
        loss.backward()
        losses.append(loss)
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)
    grad = nchw.resnet.embedder.embedder.convolution.weight.grad
    # The two layouts sum in different orders (oneDNN picks kernels per CPU): allow float error at the grad's scale.
    scale = grad.abs().max().item()
    torch.testing.assert_close(
        nhwc.resnet.embedder.embedder.convolution.weight.grad, grad, rtol=1e-4, atol=1e-4 * scale
    )
