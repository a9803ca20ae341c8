"""``labelzoo simulate``: a simulated annotator plays the annotation loop against a live LabelZoo server.

``dataset`` reads and splits the labelled cases, ``metrics`` (pure) measures correction effort and model
quality, ``server`` starts ``labelzoo serve`` on a free loopback port, ``loop`` runs the rounds through
``monailabel.client.MONAILabelClient``, ``report`` (pure) summarises runs and plots them, ``commands``
is the command line.
"""
