# seqvae in Sonic Pi: paste into a buffer and press Run while `seqvae serve` runs.
#
# Sonic Pi hears incoming OSC on port 4560 (as cues named /osc*/...), so the first request asks
# the server to send this client's replies there. A knob position walks from melody a to b; each
# morph comes back as /seqvae/notes slot bpm count pitch start duration velocity ...

use_osc "localhost", 57130
osc "/seqvae/reply_to", 4560
osc "/seqvae/sample", "a", 0.5
osc "/seqvae/sample", "b", 0.5

live_loop :seqvae_knob do
  osc "/seqvae/morph", "a", "b", (ring 0, 0.25, 0.5, 0.75, 1, 0.75, 0.5, 0.25).tick, "knob"
  slot, bpm, count, *flat = sync "/osc*/seqvae/notes"
  notes = flat.each_slice(4).to_a
  beats = [notes.map { |p, s, d, v| s + d }.max || 4, 4].max
  beats = (beats / 4.0).ceil * 4  # whole bars
  use_bpm bpm
  use_synth :pluck
  at notes.map { |p, s, d, v| s }, notes do |p, s, d, v|
    play p, sustain: d * 0.9, release: 0.1, amp: v / 127.0
  end
  sleep beats
end

# Errors arrive as cues too:
live_loop :seqvae_errors do
  request, message = sync "/osc*/seqvae/error"
  puts "seqvae: #{request}: #{message}"
end
