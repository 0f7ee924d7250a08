-- hysteresis: an on/off controller with two thresholds, as a thermostat works. Heating
-- turns on below 'low' and off above 'high'; cooling the other way round. Between the two
-- the output keeps its state, so a reading that wavers around one threshold does not
-- switch the actuator back and forth.

local state -- "on" or "off": this node's own (each node runs the file in its own state)

return {
    name = "hysteresis",
    category = "climate",
    color = "#87A980",
    icon = "font-awesome/fa-toggle-on",
    inputs = 1,
    outputs = 1,
    properties = {
        {name = "property", type = "property", default = "payload", required = true,
         label = "Input", help = "message property holding the measured value"},
        {name = "mode", type = "select", options = {"heating", "cooling"}, default = "heating",
         label = "Mode", help = "heating: on below low; cooling: on above high"},
        {name = "low", type = "number", default = 20, label = "Low",
         help = "lower threshold"},
        {name = "high", type = "number", default = 22, label = "High",
         help = "upper threshold, above low",
         validate = function(value, config)
             if value <= config.low then
                 return "must be above low (" .. config.low .. ")"
             end
         end},
        {name = "onPayload", type = "json", default = true, label = "On payload",
         help = "payload sent when switching on"},
        {name = "offPayload", type = "json", default = false, label = "Off payload",
         help = "payload sent when switching off"},
        {name = "initial", type = "select", options = {"off", "on"}, default = "off",
         label = "Initial state", help = "state assumed before the first switch"},
        {name = "changesOnly", type = "boolean", default = true, label = "Changes only",
         help = "send only when the state changes"},
    },
    help = [[
An on/off controller with hysteresis: a thermostat, a humidistat, a pump on a level.

### Inputs

: *property* (number) : the measured value.

### Outputs

: payload (any) : *On payload* when switching on, *Off payload* when switching off. The
  message is the one that caused the switch, with `msg.state` set to `"on"` or `"off"`.

### Details

In *heating* mode the output switches on when the value falls below *low* and off when it
rises above *high*; in *cooling* mode on above *high* and off below *low*. Between the
thresholds the state stays as it is. With *Changes only* (the default) a message goes out
only when the state changes; otherwise every reading sends the current state. A value
that is not a number is an error that a `catch` node receives.
]],

    setup = function(node)
        state = node.config.initial
        node.status({fill = "grey", shape = "ring", text = state})
    end,

    input = function(node, msg)
        local cfg = node.config
        local v = util.getMessageProperty(msg, cfg.property)
        if type(v) ~= "number" then
            node.error("hysteresis: the input must be a number", msg)
            return nil
        end
        local want = state
        if cfg.mode == "heating" then
            if v < cfg.low then want = "on" elseif v > cfg.high then want = "off" end
        else
            if v > cfg.high then want = "on" elseif v < cfg.low then want = "off" end
        end
        local changed = want ~= state
        state = want
        node.status({fill = state == "on" and "green" or "grey", shape = "dot",
                     text = string.format("%s (%g)", state, v)})
        if not changed and cfg.changesOnly then
            return nil
        end
        msg.payload = state == "on" and cfg.onPayload or cfg.offPayload
        msg.state = state
        return msg
    end,
}
