"""Recovery stages on compressed models: fine-tuning (LoRA/QLoRA with peft and the Trainer)
and distillation, each a Trainer run and the runner that builds its models and writes its record."""
