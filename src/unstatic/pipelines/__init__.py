"""Pipelines: functions that compose models, schedules, samplers and guidance. The CLI and server call these."""
