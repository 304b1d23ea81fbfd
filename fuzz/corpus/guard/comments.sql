SELECT /* ( /* nested ( */ ( */ abs(1) -- f(f(f(
, 2