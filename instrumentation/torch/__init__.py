"""PyTorch integration (``pip install 'factorylens[torch]'``): phases timed automatically.

::

    import factorylens.instrumentation as fl
    from factorylens.instrumentation.torch import TorchInstrumentor, instrument_dataloader, to_device

    fl.init(job_id="llm-7b", model_flops_per_sample=flops)
    TorchInstrumentor(model=model).instrument()
    for batch in instrument_dataloader(loader):
        with fl.step(samples=batch[0].shape[0]):
            x, y = to_device(batch, "cuda")
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
"""

from factorylens.instrumentation.torch._integration import (
    COLLECTIVES,
    PhaseTimer,
    TorchInstrumentor,
    instrument_dataloader,
    to_device,
)

__all__ = ["COLLECTIVES", "PhaseTimer", "TorchInstrumentor", "instrument_dataloader", "to_device"]
