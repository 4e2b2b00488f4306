"""The subscriber lifecycle: model, states, import and export."""
