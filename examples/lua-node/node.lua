-- A node type written in Lua: copy this folder, rename it, change the declaration below,
-- and start eddy with `--nodes PATH/TO/THE/FOLDER` (or the folder holding it). The full
-- format is in nodes/README.md, "Node types in Lua".
--
-- This one averages the last N readings per topic: a moving average that smooths a noisy
-- sensor.

local windows = {} -- topic -> {values..., sum = s}; each node has its own

return {
    -- the type's name in flows and in the palette
    name = "moving average",
    category = "function",   -- palette section
    color = "#E2D96E",       -- "#rrggbb"
    icon = "font-awesome/fa-line-chart",
    inputs = 1,              -- 0 or 1
    outputs = 1,

    -- the edit dialog, in order; values reach the handlers as node.config.<name>
    properties = {
        {name = "size", type = "integer", default = 5, min = 1, max = 1000,
         label = "Readings", help = "how many readings to average"},
        {name = "property", type = "property", default = "payload", required = true,
         label = "Property", help = "message property holding the reading"},
    },

    -- shown in the editor's help sidebar (Markdown)
    help = [[
Replaces a reading with the average of the last *Readings* readings of the same
`msg.topic`. Until that many have arrived, the average is over those there are.
]],

    -- optional: runs once when the node starts
    setup = function(node)
        node.status({text = "no readings yet"})
    end,

    -- runs for each message; return the message (or a list per output, or nothing)
    input = function(node, msg)
        local value = util.getMessageProperty(msg, node.config.property)
        if type(value) ~= "number" then
            node.error("moving average: the reading must be a number", msg)
            return nil
        end
        local key = msg.topic or ""
        local w = windows[key]
        if not w then
            w = {sum = 0}
            windows[key] = w
        end
        w[#w + 1] = value
        w.sum = w.sum + value
        if #w > node.config.size then
            w.sum = w.sum - table.remove(w, 1)
        end
        local avg = w.sum / #w
        util.setMessageProperty(msg, node.config.property, avg)
        node.status({text = string.format("%g over %d", avg, #w)})
        return msg
    end,

    -- optional: runs when the node stops
    close = function(node)
        windows = {}
    end,
}
