"""koxpulse: streaming KPIs, anomaly and fraud alerts for one-code-per-item marketing."""

__version__ = "0.1.0"
