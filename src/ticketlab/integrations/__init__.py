"""Ticketlab inside other frameworks (each an optional extra, imported only by the module that needs it):

    from ticketlab.integrations.huggingface import LotteryCallback   # transformers.Trainer    ticketlab[nlp]
    from ticketlab.integrations.lightning import LotteryCallback     # lightning.Trainer       ticketlab[lightning]
    from ticketlab.integrations.tensorboard import TensorBoardSink, tensorboard_from_run     ticketlab[tensorboard]

The prune / rewind cycle they share is integrations/cycle.py; docs/integrations.md shows each at work.
"""
