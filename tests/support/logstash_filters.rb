# The rendered pipeline's filters, run by Ruby's own regexp engine (Onigmo;
# Logstash runs JRuby, whose Joni is a port of Onigmo).
#
# Input (stdin, JSON): {"whitelist": [...], "gsub": [[field, pattern, replacement], ...],
#                       "audit": [[field, "==" or "=~", text or pattern], ...],
#                       "events": [{field: value}, ...]}
# the strings exactly as tests/support/lscl.py reads them from the pipeline.
# Output (stdout, JSON): the events after the filters, each with "__audit" set
# when every term of the audit condition held ({"events", "broken"} when lenient).
#
# What each step copies:
# - prune: logstash-plugins/logstash-filter-prune lib/logstash/filters/prune.rb
#   (register: Regexp.union(whitelist_names.map { |x| Regexp.new(x) }); filter:
#   every top-level field whose name does not match is removed).
# - gsub: logstash-plugins/logstash-filter-mutate lib/logstash/filters/mutate.rb
#   (register: Regexp.new(needle) unless it holds "%{"; gsub: a String field, or
#   each String of an Array, becomes original.gsub(needle, event.sprintf(replacement))).
#   The tests refuse "%{" in replacements, so event.sprintf is the identity here.
# - conditions: a regexp literal compiles as a Ruby Regexp and matches with =~;
#   here a field that is missing or not a String never matches (the tests
#   only route on String fields); == compares the field's value with the
#   string; "and" needs every term.
require "json"

input = JSON.parse($stdin.read)
whitelist = Regexp.union(input.fetch("whitelist").map { |x| Regexp.new(x) })
# Logstash refuses a pipeline whose pattern does not compile (mutate's register
# raises). "lenient" (the control test only) drops such patterns instead and
# reports them, to show what the rest would do.
broken = []
gsubs = input.fetch("gsub").filter_map do |field, needle, replacement|
  [field, Regexp.new(needle), replacement]
rescue RegexpError => e
  raise unless input["lenient"]
  broken << "#{needle}: #{e.message}"
  nil
end
audit = input.fetch("audit").map { |field, op, v| [field, op, op == "=~" ? Regexp.new(v) : v] }

out = input.fetch("events").map do |event|
  event = event.reject { |field, _| !field.match(whitelist) } unless input.fetch("whitelist").empty?
  gsubs.each do |field, needle, replacement|
    value = event[field]
    case value
    when Array
      event[field] = value.map { |v| v.is_a?(String) ? v.gsub(needle, replacement) : v }
    when String
      event[field] = value.gsub(needle, replacement)
    end
  end
  held = audit.all? do |field, op, v|
    value = event[field]
    op == "=~" ? (value.is_a?(String) && v.match?(value)) : value == v
  end
  event["__audit"] = !audit.empty? && held
  event
end

puts JSON.generate(input["lenient"] ? { "events" => out, "broken" => broken } : out)
