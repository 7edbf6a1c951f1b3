"""What the OpenAI sessions cost: token usage per response, a dated price table, daily and monthly budgets.

Modules:
    usage   ``Usage``: the tokens of one ``response.done`` by kind (text/audio, input/cached/output), summed.
    prices  ``PriceTable``: prices per million tokens for one model, with the date they were taken from.
    budget  ``Budget``: whether the day's or the month's spending has reached its limit (new calls then go to
            a person; calls in progress finish).
"""
